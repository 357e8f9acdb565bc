/*
 * uri.h: RFC 7512 PKCS#11 URIs: parsing (to select a token and objects) and
 * printing (the URIs p11enroll reports for keys and certificates).
 */
#ifndef P11E_URI_H
#define P11E_URI_H

#include <stddef.h>

struct tok_uri {
	/* path attributes; NULL = not given (matches anything) */
	char *token, *manufacturer, *serial, *model;
	char *object;      /* CKA_LABEL */
	unsigned char *id; /* CKA_ID */
	size_t id_len;
	char *type; /* "private", "public", "cert", "secret-key", "data" */
	char *library_manufacturer, *library_description, *library_version;
	unsigned long slot_id;
	int has_slot_id;
	char *slot_description, *slot_manufacturer;
	/* query attributes */
	char *module_path, *module_name, *pin_source, *pin_value;
};

/*
 * Parses s ("pkcs11:" path ["?" query]). Percent-escapes are decoded.
 * Unknown path attributes are errors (a URI with an attribute we cannot match
 * must not silently select a token); unknown query attributes are ignored.
 * Errors: P11E_ERR_CONFIG (message logged naming the attribute), P11E_ERR_ALLOC.
 */
int tok_uri_parse(const char *s, struct tok_uri **out);

void tok_uri_free(struct tok_uri *u);

/*
 * Prints the path attributes that are set, in the order token, manufacturer,
 * serial, model, object, id, type (slot and library attributes are not
 * printed), percent-encoding every byte outside RFC 7512's unreserved set and
 * every byte of id. *out is malloc'ed. Errors: P11E_ERR_ALLOC.
 */
int tok_uri_format(const struct tok_uri *u, char **out);

/*
 * 1 when every token attribute the URI names (token, manufacturer, serial,
 * model) equals the corresponding CK_TOKEN_INFO field, given here as the
 * raw blank-padded fields (32, 32, 16, 16 bytes); else 0.
 */
int tok_uri_match_token(const struct tok_uri *u, const unsigned char label[32],
                        const unsigned char manufacturer[32], const unsigned char model[16],
                        const unsigned char serial[16]);

#endif
