/*
 * secret.h: reading secrets (PIN, challenge, passwords) from files.
 * Secrets are wiped with OPENSSL_cleanse when freed and never logged.
 */
#ifndef P11E_SECRET_H
#define P11E_SECRET_H

/*
 * Reads the secret in the file at path (what names it in messages, e.g.
 * "PIN file"). One line; a trailing CR/LF is removed. The file must be a
 * regular file that neither group nor others can access (mode & 077 == 0):
 * otherwise P11E_ERR_CONFIG with a message naming the path and its mode.
 * Missing/unreadable: P11E_ERR_FILE. Empty or larger than 4 KiB:
 * P11E_ERR_CONFIG. On success *out is a NUL-terminated string to release
 * with secret_free.
 */
int secret_read_file(const char *path, const char *what, char **out);

/* Duplicates a secret string into a buffer secret_free can release. */
int secret_dup(const char *s, char **out);

/* Wipes and frees a secret string. Accepts NULL. */
void secret_free(char *s);

#endif
