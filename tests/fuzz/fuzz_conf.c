/*
 * fuzz_conf.c: the configuration file (conf_load: the INI lexer of ini.c and
 * every section, key and value check of conf.c). Each input is written to a
 * file (0600) in a directory of the target's own and loaded from there;
 * relative paths in it resolve against that directory. The input as one
 * string is also read as a duration (conf_parse_duration).
 */
#include "conf.h"
#include "fuzz_common.h"

static char path[600];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	snprintf(path, sizeof(path), "%s/p11enroll.conf", fuzz_dir("conf"));
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf *c = NULL;
	char *s;
	long secs = 0;

	fuzz_write(path, data, size);
	if (conf_load(path, &c) == 0) {
		if (c == NULL || c->scep_url == NULL || c->token_uri == NULL || c->dn == NULL ||
		    c->key_label == NULL || c->state_dir == NULL)
			abort();
	} else if (c != NULL) {
		abort();
	}
	conf_free(c);
	s = fuzz_str(data, size);
	if (conf_parse_duration(s, &secs) == 0 && (secs <= 0 || secs > 10L * 366 * 86400))
		abort();
	free(s);
	return 0;
}
