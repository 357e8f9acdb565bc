#include "err.h"

const char *
p11e_strerror(int err)
{
	switch (err) {
	case P11E_OK:
		return "success";
	case P11E_ERR_INTERNAL:
		return "internal error";
	case P11E_ERR_ALLOC:
		return "out of memory";
	case P11E_ERR_USAGE:
		return "usage error";
	case P11E_ERR_CONFIG:
		return "configuration error";
	case P11E_ERR_NETWORK:
		return "server unreachable or HTTP error";
	case P11E_ERR_PENDING:
		return "request pending at the CA";
	case P11E_ERR_REJECTED:
		return "rejected by the CA";
	case P11E_ERR_VERIFY:
		return "response failed verification";
	case P11E_ERR_MALFORMED:
		return "malformed response";
	case P11E_ERR_TOKEN:
		return "token error";
	case P11E_ERR_FILE:
		return "file error";
	case P11E_ERR_NOTFOUND:
		return "not found";
	case P11E_ERR_PIN:
		return "PIN refused or not usable";
	case P11E_ERR_BUSY:
		return "another run is working on this profile";
	case P11E_ERR_HOOK:
		return "a hook failed";
	}
	return "unknown error";
}

int
p11e_exit_code(int err)
{
	switch (err) {
	case P11E_OK:
		return P11E_EXIT_OK;
	case P11E_ERR_USAGE:
		return P11E_EXIT_USAGE;
	case P11E_ERR_CONFIG:
		return P11E_EXIT_CONFIG;
	case P11E_ERR_NETWORK:
	case P11E_ERR_HOOK:
		return P11E_EXIT_UNAVAILABLE;
	case P11E_ERR_PENDING:
	case P11E_ERR_BUSY:
		return P11E_EXIT_TEMPFAIL;
	case P11E_ERR_REJECTED:
		return P11E_EXIT_NOPERM;
	case P11E_ERR_VERIFY:
	case P11E_ERR_MALFORMED:
		return P11E_EXIT_PROTOCOL;
	case P11E_ERR_TOKEN:
	case P11E_ERR_FILE:
	case P11E_ERR_NOTFOUND:
	case P11E_ERR_PIN:
		return P11E_EXIT_IOERR;
	}
	return P11E_EXIT_SOFTWARE;
}
