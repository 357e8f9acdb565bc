/*
 * netproc_connect.c: the network process's connections, resolved and made by
 * the process that started it (netproc_connect.h).
 */
#define _GNU_SOURCE /* MSG_CMSG_CLOEXEC */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "netproc_connect.h"
#include "secret.h"

#define HOST_MAX 256
#define RESOLVE_MAX 1024

/* One place a request may go: a name (or numeric address) and a port. */
struct endpoint {
	char host[HOST_MAX];
	unsigned port;
};

/*
 * The host and port of a URL, "[scheme://][user[:pw]@]host[:port][/...]";
 * def_port when it names none, or when the scheme is https, 443 (socks*: 1080).
 * 0, or -1 when it does not parse (the network process's libcurl will not
 * reach it either).
 */
static int
endpoint_of(const char *url, unsigned def_port, struct endpoint *e)
{
	const char *a = url, *end, *at, *h, *hend, *colon;
	size_t n;
	unsigned long port;
	char *pe;

	if ((h = strstr(url, "://")) != NULL) {
		if (strncasecmp(url, "https://", 8) == 0)
			def_port = 443;
		else if (strncasecmp(url, "socks", 5) == 0)
			def_port = 1080;
		a = h + 3;
	}
	end = a + strcspn(a, "/?#");
	/* user information ends at the authority's last '@' */
	for (at = end; at > a && at[-1] != '@'; at--)
		;
	h = at;
	if (h < end && *h == '[') {
		if ((hend = memchr(h, ']', (size_t)(end - h))) == NULL)
			return -1;
		h++;
		colon = hend + 1 < end && hend[1] == ':' ? hend + 1 : NULL;
		if (hend + 1 < end && colon == NULL)
			return -1;
	} else {
		hend = memchr(h, ':', (size_t)(end - h));
		colon = hend;
		if (hend == NULL)
			hend = end;
	}
	n = (size_t)(hend - h);
	if (n == 0 || n >= sizeof(e->host))
		return -1;
	memcpy(e->host, h, n);
	e->host[n] = '\0';
	e->port = def_port;
	if (colon != NULL && colon + 1 < end) {
		errno = 0;
		port = strtoul(colon + 1, &pe, 10);
		if (pe != end || errno != 0 || port == 0 || port > 65535 ||
		    !isdigit((unsigned char)colon[1]))
			return -1;
		e->port = (unsigned)port;
	}
	return 0;
}

/* Whether s is a numeric IPv4 or IPv6 address (libcurl resolves none). */
static int
numeric(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Adds e once to es (at most NETCONN_NAMES_MAX). */
static void
add_endpoint(struct endpoint *es, size_t *n, const struct endpoint *e)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (es[i].port == e->port && strcasecmp(es[i].host, e->host) == 0)
			return;
	if (*n < NETCONN_NAMES_MAX)
		es[(*n)++] = *e;
}

/* Appends "addr" (an IPv6 one in brackets) to buf at *pos; -1 when it does not fit. */
static int
put_addr(char *buf, size_t size, size_t *pos, const struct addrinfo *ai)
{
	char a[INET6_ADDRSTRLEN];
	const void *in;
	int k;

	in = ai->ai_family == AF_INET
	         ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
	         : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
	if (inet_ntop(ai->ai_family, in, a, sizeof(a)) == NULL)
		return -1;
	k = snprintf(buf + *pos, size - *pos, ai->ai_family == AF_INET6 ? "%s[%s]" : "%s%s",
	             buf[*pos - 1] == ':' ? "" : ",", a);
	if (k < 0 || (size_t)k >= size - *pos)
		return -1;
	*pos += (size_t)k;
	return 0;
}

/* Resolves e into p: its addresses, and a resolve entry for a name. 0 or P11E_ERR_ALLOC. */
static int
resolve(const struct endpoint *e, struct netconn_plan *p)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[8], entry[RESOLVE_MAX];
	size_t pos;
	int g, named = !numeric(e->host), any = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = named ? 0 : AI_NUMERICHOST;
	snprintf(port, sizeof(port), "%u", e->port);
	if ((g = getaddrinfo(e->host, port, &hints, &res)) != 0) {
		/* libcurl then fails to resolve it, and says so */
		log_debug("cannot resolve %s: %s", e->host,
		          g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
		return g == EAI_MEMORY ? P11E_ERR_ALLOC : 0;
	}
	pos = (size_t)snprintf(entry, sizeof(entry), "%s:%u:", e->host, e->port);
	for (ai = res; ai != NULL && pos < sizeof(entry); ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(p->addr[0]) || p->n_addr >= NETCONN_ADDRS_MAX)
			continue;
		if (named && put_addr(entry, sizeof(entry), &pos, ai) != 0)
			continue;
		memcpy(&p->addr[p->n_addr], ai->ai_addr, ai->ai_addrlen);
		p->addr_len[p->n_addr++] = ai->ai_addrlen;
		any = 1;
	}
	freeaddrinfo(res);
	if (named && any && p->n_resolve < NETCONN_NAMES_MAX) {
		if ((p->resolve[p->n_resolve] = strdup(entry)) == NULL)
			return P11E_ERR_ALLOC;
		p->n_resolve++;
	}
	return 0;
}

int
netconn_plan_make(const char *url, const struct http_opts *o, struct netconn_plan *p)
{
	/* the proxies libcurl reads from the environment (not HTTP_PROXY, which it ignores) */
	static const char *const env[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy",
	                                  "ALL_PROXY"};
	struct endpoint es[NETCONN_NAMES_MAX], e;
	size_t n = 0, i;
	const char *v;
	int r;

	memset(p, 0, sizeof(*p));
	p->timeout_s = http_connect_timeout(o->timeout_s);
	if (endpoint_of(url, 80, &e) == 0)
		add_endpoint(es, &n, &e);
	if (!o->no_proxy && o->proxy != NULL && o->proxy[0] != '\0') {
		if (endpoint_of(o->proxy, 1080, &e) == 0)
			add_endpoint(es, &n, &e);
	} else if (!o->no_proxy) {
		for (i = 0; i < sizeof(env) / sizeof(env[0]); i++)
			if ((v = getenv(env[i])) != NULL && v[0] != '\0' &&
			    endpoint_of(v, 1080, &e) == 0)
				add_endpoint(es, &n, &e);
	}
	for (i = 0; i < n; i++)
		if ((r = resolve(&es[i], p)) != 0) {
			netconn_plan_free(p);
			return r;
		}
	return 0;
}

void
netconn_plan_free(struct netconn_plan *p)
{
	size_t i;

	for (i = 0; i < p->n_resolve; i++)
		free(p->resolve[i]);
	memset(p, 0, sizeof(*p));
}

void
netconn_plan_write(struct wire_wbuf *w, const struct netconn_plan *p)
{
	size_t i;

	wire_w_num(w, (int64_t)p->n_resolve);
	for (i = 0; i < p->n_resolve; i++)
		wire_w_str(w, p->resolve[i]);
}

void
netconn_addr_str(const struct sockaddr *addr, socklen_t len, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)addr;

		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		snprintf(buf, size, "%s port %u", a, ntohs(s->sin_port));
	} else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)addr;

		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		snprintf(buf, size, "[%s] port %u", a, ntohs(s->sin6_port));
	} else {
		snprintf(buf, size, "an address of family %d", addr->sa_family);
	}
}

/* Whether addr (len bytes) is one of p's: the same family, address and port. */
static int
allowed(const struct netconn_plan *p, const struct sockaddr_storage *addr, size_t len)
{
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)addr, *b4;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)addr, *b6;
	size_t i;

	for (i = 0; i < p->n_addr; i++) {
		if (p->addr[i].ss_family != addr->ss_family || p->addr_len[i] != len)
			continue;
		b4 = (const struct sockaddr_in *)&p->addr[i];
		b6 = (const struct sockaddr_in6 *)&p->addr[i];
		if (addr->ss_family == AF_INET && a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr)
			return 1;
		if (addr->ss_family == AF_INET6 && a6->sin6_port == b6->sin6_port &&
		    a6->sin6_scope_id == b6->sin6_scope_id &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr)) == 0)
			return 1;
	}
	return 0;
}

/* A TCP connection to addr within timeout_s: the socket, or -1 (errno). */
static int
connect_to(const struct sockaddr_storage *addr, socklen_t len, long timeout_s)
{
	struct pollfd pfd;
	socklen_t elen = sizeof(int);
	int fd, e = 0, k;

	if ((fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	                 IPPROTO_TCP)) < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)addr, len) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		e = errno;
		goto fail;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	while ((k = poll(&pfd, 1, (int)(timeout_s * 1000))) < 0 && errno == EINTR)
		;
	if (k == 0) {
		e = ETIMEDOUT;
		goto fail;
	}
	if (k < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0)
		e = errno;
	if (e == 0)
		return fd;
fail:
	close(fd);
	errno = e;
	return -1;
}

int
netconn_serve(int fd, const struct netconn_plan *p)
{
	struct sockaddr_storage ss;
	struct wire_rbuf r;
	unsigned char *msg = NULL;
	const unsigned char *a;
	char shown[INET6_ADDRSTRLEN + 16];
	size_t len = 0, alen = 0;
	int s, e = 0, rc = -1;

	if ((rc = wire_recv(fd, &msg, &len)) != 0)
		return rc == 1 ? 1 : -1;
	rc = -1;
	r.p = msg;
	r.len = len;
	r.off = 0;
	r.bad = 0;
	a = wire_r_bytes(&r, &alen);
	if (a == NULL || r.bad || r.off != r.len || alen < sizeof(sa_family_t) ||
	    alen > sizeof(ss)) {
		log_error("the network process sent a malformed connection request");
		goto out;
	}
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, a, alen);
	netconn_addr_str((const struct sockaddr *)&ss, (socklen_t)alen, shown, sizeof(shown));
	if ((ss.ss_family != AF_INET || alen != sizeof(struct sockaddr_in)) &&
	    (ss.ss_family != AF_INET6 || alen != sizeof(struct sockaddr_in6))) {
		log_error("the network process asked for a connection to %s; refused", shown);
		goto out;
	}
	if (!allowed(p, &ss, alen)) {
		log_error("the network process asked for a connection to %s, where %s; refused",
		          shown,
		          p->n_addr == 0 ? "no request was going"
		                         : "this request does not go (its server, its proxy)");
		goto out;
	}
	if ((s = connect_to(&ss, (socklen_t)alen, p->timeout_s)) < 0)
		e = errno != 0 ? errno : ECONNREFUSED;
	log_debug("connection to %s for the network process: %s", shown,
	          s >= 0 ? "made" : strerror(e));
	rc = wire_send_fd(fd, e, s);
	if (s >= 0)
		close(s);
out:
	secret_wipe_free(msg);
	return rc;
}

int
netconn_ask(int fd, const struct sockaddr *addr, socklen_t len, int *err)
{
	struct wire_wbuf w = {NULL, 0, 0, 0};
	int e = EPROTO, s = -1, k;

	*err = EPROTO;
	wire_w_bytes(&w, addr, len);
	k = w.oom || wire_send(fd, &w) != 0 ? -1 : 0;
	wire_w_free(&w);
	if (k != 0 || wire_recv_fd(fd, &e, &s) != 0)
		return -1;
	if (e == 0 && s >= 0) {
		*err = 0;
		return s;
	}
	if (s >= 0)
		close(s);
	*err = e != 0 ? e : EPROTO;
	return -1;
}
