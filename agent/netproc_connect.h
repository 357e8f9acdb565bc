/*
 * netproc_connect.h: the connections of the network process, made by the
 * process that started it (netproc_connect.c), private to agent/.
 *
 * The network process may neither resolve a name nor open a socket (its
 * filter refuses socket(), kills on connect()). For each request, this
 * process works out where it may go: the URL's host and port, and the proxy
 * it names or, without one, the environment's (http_proxy, https_proxy,
 * HTTPS_PROXY, all_proxy, ALL_PROXY), none with [scep] use_proxy = no. It
 * resolves those names itself and sends the addresses with the request
 * (libcurl's CURLOPT_RESOLVE there). When libcurl would connect, the network
 * process asks here for a socket to one address (NETPROC_CONNECT_FD); this
 * process connects it only if the address is one of this request's, and
 * passes the connected socket back (SCM_RIGHTS). An address outside them is
 * what a network process taken over by a hostile server would ask for: it is
 * stopped.
 */
#ifndef P11E_NETPROC_CONNECT_H
#define P11E_NETPROC_CONNECT_H

#include <stddef.h>
#include <sys/socket.h>

#include "http.h"
#include "wire.h"

/* The connection socket's descriptor in the network process (beside NETPROC_FD). */
#define NETPROC_CONNECT_FD 4

/* At most this many names (URL host and proxies) and addresses per request. */
#define NETCONN_NAMES_MAX 8
#define NETCONN_ADDRS_MAX 32

/* Where one request may connect. Zeroed: nowhere (a parsing job). */
struct netconn_plan {
	struct sockaddr_storage addr[NETCONN_ADDRS_MAX];
	socklen_t addr_len[NETCONN_ADDRS_MAX];
	size_t n_addr;
	/* CURLOPT_RESOLVE entries: "host:port:addr[,addr...]" */
	char *resolve[NETCONN_NAMES_MAX];
	size_t n_resolve;
	long timeout_s; /* of one connect */
};

/*
 * Fills p for a request to url with o's proxy settings: the names resolved
 * here (getaddrinfo; a name that does not resolve is left to libcurl, which
 * then cannot resolve it either and says so), numeric hosts taken as they
 * are. 0 or P11E_ERR_ALLOC. netconn_plan_free after use.
 */
int netconn_plan_make(const char *url, const struct http_opts *o, struct netconn_plan *p);
void netconn_plan_free(struct netconn_plan *p);

/* Appends the plan's resolve entries to a request: their number, then each. */
void netconn_plan_write(struct wire_wbuf *w, const struct netconn_plan *p);

/*
 * Serves one connection request read from fd (the network process's
 * NETPROC_CONNECT_FD): an address of p is connected (at most p->timeout_s)
 * and the socket sent back, or the connect's errno; 0. -1 when the request
 * is malformed or names an address outside p (logged: the caller stops the
 * network process); 1 when fd is closed (the network process ended).
 */
int netconn_serve(int fd, const struct netconn_plan *p);

/*
 * In the network process: the connected socket to the address libcurl asks
 * for, from the process that started it (fd: NETPROC_CONNECT_FD); -1 when
 * that process could not connect (*err: its errno) or refused.
 */
int netconn_ask(int fd, const struct sockaddr *addr, socklen_t len, int *err);

/* A printable "ADDR port PORT" of addr into buf (an IPv6 address in brackets). */
void netconn_addr_str(const struct sockaddr *addr, socklen_t len, char *buf, size_t size);

#endif
