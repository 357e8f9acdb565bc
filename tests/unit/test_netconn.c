/*
 * test_netconn.c: where p11enroll lets its network process connect
 * (agent/netproc_connect.c): the addresses of a request's URL and proxy, and
 * the connection served over a socket, or refused for any other address.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "log.h"
#include "netproc_connect.h"
#include "wire.h"

/* The plan's addresses as "ADDR port PORT" lines, in order. */
static void
addrs_of(const struct netconn_plan *p, char *buf, size_t size)
{
	char one[80];
	size_t i;

	buf[0] = '\0';
	for (i = 0; i < p->n_addr; i++) {
		netconn_addr_str((const struct sockaddr *)&p->addr[i], p->addr_len[i], one,
		                 sizeof(one));
		strncat(buf, one, size - strlen(buf) - 1);
		strncat(buf, ";", size - strlen(buf) - 1);
	}
}

static void
plan_is(const char *url, const struct http_opts *o, const char *want_addrs, size_t want_resolve)
{
	struct netconn_plan p;
	char got[1024];

	assert_int_equal(netconn_plan_make(url, o, &p), 0);
	addrs_of(&p, got, sizeof(got));
	assert_string_equal(got, want_addrs);
	assert_int_equal(p.n_resolve, want_resolve);
	netconn_plan_free(&p);
}

static void
unset_proxies(void)
{
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	unsetenv("HTTP_PROXY");
}

/* A URL's host and port: its scheme's port by default, user information skipped up to
 * the authority's last '@', IPv6 literals, and nothing for what does not parse. */
static void
test_url_endpoints(void **state)
{
	struct http_opts o;

	(void)state;
	unset_proxies();
	memset(&o, 0, sizeof(o));
	plan_is("http://127.0.0.1:8080/scep", &o, "127.0.0.1 port 8080;", 0);
	plan_is("http://127.0.0.1/scep", &o, "127.0.0.1 port 80;", 0);
	plan_is("https://127.0.0.1/certsrv/mscep/mscep.dll", &o, "127.0.0.1 port 443;", 0);
	plan_is("HTTPS://127.0.0.1?operation=GetCACaps", &o, "127.0.0.1 port 443;", 0);
	plan_is("https://[::1]:8443/x", &o, "[::1] port 8443;", 0);
	plan_is("http://user:p@ss@127.0.0.1:99/x", &o, "127.0.0.1 port 99;", 0);
	plan_is("http://evil.example@127.0.0.1:98#@127.0.0.9:1", &o, "127.0.0.1 port 98;", 0);
	/* nothing for what does not parse: the network process cannot connect at all */
	plan_is("http://[::1/x", &o, "", 0);
	plan_is("http://127.0.0.1:0/x", &o, "", 0);
	plan_is("http://127.0.0.1:65536/x", &o, "", 0);
	plan_is("http://127.0.0.1:80x/x", &o, "", 0);
	plan_is("http://:80/x", &o, "", 0);
}

/* A name is resolved here, and its addresses go to libcurl as a resolve entry. */
static void
test_name_resolved_here(void **state)
{
	struct netconn_plan p;
	struct http_opts o;
	char got[1024];

	(void)state;
	unset_proxies();
	memset(&o, 0, sizeof(o));
	assert_int_equal(netconn_plan_make("http://localhost:8081/scep", &o, &p), 0);
	addrs_of(&p, got, sizeof(got));
	assert_non_null(strstr(got, "127.0.0.1 port 8081;"));
	assert_int_equal(p.n_resolve, 1);
	assert_memory_equal(p.resolve[0], "localhost:8081:", 15);
	assert_non_null(strstr(p.resolve[0], "127.0.0.1"));
	netconn_plan_free(&p);
}

/* The explicit proxy, or the environment's (all five names libcurl reads, not
 * HTTP_PROXY); none of them with use_proxy = no. The URL's host stays allowed: no_proxy
 * may send a request past the proxy. */
static void
test_proxies(void **state)
{
	struct http_opts o;

	(void)state;
	unset_proxies();
	memset(&o, 0, sizeof(o));
	o.proxy = "http://u:pw@127.0.0.2:3128";
	plan_is("http://127.0.0.1:80/", &o, "127.0.0.1 port 80;127.0.0.2 port 3128;", 0);
	o.proxy = "127.0.0.2";
	plan_is("http://127.0.0.1:80/", &o, "127.0.0.1 port 80;127.0.0.2 port 1080;", 0);
	o.proxy = "https://127.0.0.2";
	plan_is("http://127.0.0.1:80/", &o, "127.0.0.1 port 80;127.0.0.2 port 443;", 0);
	o.no_proxy = 1;
	plan_is("http://127.0.0.1:80/", &o, "127.0.0.1 port 80;", 0);

	memset(&o, 0, sizeof(o));
	setenv("http_proxy", "http://127.0.0.3:3128", 1);
	setenv("HTTPS_PROXY", "127.0.0.4:8080", 1);
	setenv("ALL_PROXY", "socks5h://127.0.0.5", 1);
	setenv("HTTP_PROXY", "http://127.0.0.6:1", 1);
	plan_is("http://127.0.0.1:80/", &o,
	        "127.0.0.1 port 80;127.0.0.3 port 3128;127.0.0.4 port 8080;127.0.0.5 port 1080;",
	        0);
	o.no_proxy = 1;
	plan_is("http://127.0.0.1:80/", &o, "127.0.0.1 port 80;", 0);
	/* the explicit proxy wins over the environment's */
	o.no_proxy = 0;
	o.proxy = "http://127.0.0.2:3128";
	plan_is("http://127.0.0.1:80/", &o, "127.0.0.1 port 80;127.0.0.2 port 3128;", 0);
	unset_proxies();
}

/* A listening socket on 127.0.0.1 (an ephemeral port) into *addr. */
static int
listener(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
	return fd;
}

/* Whether a connection waits on the listening socket fd: the accepted socket, or -1. */
static int
fcntl_nonblock_accept(int fd)
{
	int c;

	assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
	if ((c = accept(fd, NULL, NULL)) >= 0)
		close(c);
	return c >= 0 ? c : -1;
}

/* netconn_serve in a child on sv[1], once; its return value is the child's exit status
 * (255 for -1). */
static pid_t
serve_once(int sv[2], const struct netconn_plan *p)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int r;

		close(sv[0]);
		r = netconn_serve(sv[1], p);
		_exit(r < 0 ? 255 : r);
	}
	close(sv[1]);
	return pid;
}

static int
child_status(pid_t pid)
{
	int st = 0;

	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* The address of the plan: a socket connected to it comes back. Another port of the
 * same host: refused before any connection (nothing accepted), and the server side says
 * so (-1: its caller stops the network process). */
static void
test_serve(void **state)
{
	struct sockaddr_in a, peer, other;
	struct netconn_plan p;
	struct http_opts o;
	socklen_t len = sizeof(peer);
	char url[64];
	int lfd, lfd2, sv[2], fd, err = 0;
	pid_t pid;

	(void)state;
	unset_proxies();
	lfd = listener(&a);
	lfd2 = listener(&other);
	memset(&o, 0, sizeof(o));
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/scep", ntohs(a.sin_port));
	assert_int_equal(netconn_plan_make(url, &o, &p), 0);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = serve_once(sv, &p);
	fd = netconn_ask(sv[0], (struct sockaddr *)&a, sizeof(a), &err);
	assert_true(fd >= 0);
	assert_int_equal(err, 0);
	assert_int_equal(getpeername(fd, (struct sockaddr *)&peer, &len), 0);
	assert_int_equal(peer.sin_port, a.sin_port);
	close(fd);
	close(sv[0]);
	assert_int_equal(child_status(pid), 0);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = serve_once(sv, &p);
	fd = netconn_ask(sv[0], (struct sockaddr *)&other, sizeof(other), &err);
	assert_int_equal(fd, -1);
	close(sv[0]);
	assert_int_equal(child_status(pid), 255);
	/* nothing reached the other listener */
	assert_int_equal(fcntl_nonblock_accept(lfd2), -1);

	/* an address that refuses: its errno comes back, not a socket */
	close(lfd);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = serve_once(sv, &p);
	fd = netconn_ask(sv[0], (struct sockaddr *)&a, sizeof(a), &err);
	assert_int_equal(fd, -1);
	assert_int_equal(err, ECONNREFUSED);
	close(sv[0]);
	assert_int_equal(child_status(pid), 0);

	/* the network process gone: 1, no message */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[0]);
	assert_int_equal(netconn_serve(sv[1], &p), 1);
	close(sv[1]);
	close(lfd2);
	netconn_plan_free(&p);
}

/* Serves one raw request written by the test: netconn_serve's answer. */
static int
serve_raw(const struct netconn_plan *p, const struct wire_wbuf *w)
{
	int sv[2], r;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(wire_send(sv[0], w), 0);
	r = netconn_serve(sv[1], p);
	close(sv[0]);
	close(sv[1]);
	return r;
}

/* What the network process may send, taken over: anything but one IPv4 or IPv6 address
 * of the plan, whole, is refused (-1: it is stopped), and nothing is connected. */
static void
test_malformed_requests(void **state)
{
	struct netconn_plan p;
	struct http_opts o;
	struct sockaddr_in a4;
	struct sockaddr_storage big;
	struct wire_wbuf w = {NULL, 0, 0, 0};

	(void)state;
	unset_proxies();
	memset(&o, 0, sizeof(o));
	assert_int_equal(netconn_plan_make("http://127.0.0.1:1/", &o, &p), 0);
	memset(&a4, 0, sizeof(a4));
	a4.sin_family = AF_INET;
	a4.sin_port = htons(1);
	a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* a number, not the address's bytes */
	wire_w_num(&w, 1);
	assert_int_equal(serve_raw(&p, &w), -1);
	wire_w_free(&w);
	/* the address, then bytes more */
	wire_w_bytes(&w, &a4, sizeof(a4));
	wire_w_num(&w, 0);
	assert_int_equal(serve_raw(&p, &w), -1);
	wire_w_free(&w);
	/* an IPv4 address one byte short, and in a sockaddr_storage */
	wire_w_bytes(&w, &a4, sizeof(a4) - 1);
	assert_int_equal(serve_raw(&p, &w), -1);
	wire_w_free(&w);
	memset(&big, 0, sizeof(big));
	memcpy(&big, &a4, sizeof(a4));
	wire_w_bytes(&w, &big, sizeof(big));
	assert_int_equal(serve_raw(&p, &w), -1);
	wire_w_free(&w);
	/* a Unix socket's address: the family alone */
	big.ss_family = AF_UNIX;
	wire_w_bytes(&w, &big, 110);
	assert_int_equal(serve_raw(&p, &w), -1);
	wire_w_free(&w);
	/* NULL, and an empty string */
	wire_w_bytes(&w, NULL, 0);
	assert_int_equal(serve_raw(&p, &w), -1);
	wire_w_free(&w);
	wire_w_bytes(&w, "", 0);
	assert_int_equal(serve_raw(&p, &w), -1);
	wire_w_free(&w);
	/* and the address itself is served (nothing listens on port 1: its errno) */
	wire_w_bytes(&w, &a4, sizeof(a4));
	assert_int_equal(serve_raw(&p, &w), 0);
	wire_w_free(&w);
	netconn_plan_free(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_url_endpoints),
	    cmocka_unit_test(test_name_resolved_here),
	    cmocka_unit_test(test_proxies),
	    cmocka_unit_test(test_serve),
	    cmocka_unit_test(test_malformed_requests),
	};

	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
