/*
 * test_http.c: the transport: the reason line taken from a server's error
 * body; against a one-shot server on 127.0.0.1 (a forked child), the size
 * cap and what a request leaves in memory.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "http.h"
#include "memscan.h"
#include "secret.h"

static char errbuf[8192];
static int saved_stderr = -1, capture_fd = -1;
static char capture_path[] = "/tmp/p11e-test-http-XXXXXX";

static void
begin_capture(void)
{
	fflush(stderr);
	assert_int_equal(ftruncate(capture_fd, 0), 0);
	assert_int_equal(lseek(capture_fd, 0, SEEK_SET), 0);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(dup2(capture_fd, STDERR_FILENO) >= 0);
}

static void
end_capture(void)
{
	ssize_t n;

	fflush(stderr);
	assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
	close(saved_stderr);
	assert_int_equal(lseek(capture_fd, 0, SEEK_SET), 0);
	n = read(capture_fd, errbuf, sizeof(errbuf) - 1);
	assert_true(n >= 0);
	errbuf[n] = '\0';
}

/*
 * A server on 127.0.0.1 in a child: answers count connections, each with the
 * head and then len bytes of body, after reading the request's headers (their
 * first line goes to *req_line of the parent? no: only the child sees it).
 * *port is set; the child's pid is returned.
 */
static pid_t
serve(const char *head, const void *body, size_t len, int count, int *port)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int s, c, i;
	pid_t pid;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((s = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s, 4), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
	*port = ntohs(a.sin_port);
	assert_true((pid = fork()) >= 0);
	if (pid == 0) {
		for (i = 0; i < count; i++) {
			char req[8192];
			size_t got = 0;
			ssize_t k;

			if ((c = accept(s, NULL, NULL)) < 0)
				_exit(1);
			while (got < sizeof(req) - 1 &&
			       (k = read(c, req + got, sizeof(req) - 1 - got)) > 0) {
				got += (size_t)k;
				req[got] = '\0';
				if (strstr(req, "\r\n\r\n") != NULL)
					break;
			}
			if (write(c, head, strlen(head)) < 0 ||
			    (len > 0 && write(c, body, len) < 0))
				_exit(1);
			shutdown(c, SHUT_RDWR);
			close(c);
		}
		_exit(0);
	}
	close(s);
	return pid;
}

static void
reap(pid_t pid)
{
	int st = 0;

	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
}

static void
reason_of(const char *body, size_t len, char *buf, size_t size)
{
	struct http_resp r;

	memset(&r, 0, sizeof(r));
	r.status = 500;
	r.body = (unsigned char *)body;
	r.len = len;
	http_resp_reason(&r, buf, size);
}

static void
test_first_line(void **state)
{
	char buf[4 * HTTP_REASON_MAX + 1];
	const char *step = "no enveloped recipient\n";
	(void)state;

	reason_of(step, strlen(step), buf, sizeof(buf));
	assert_string_equal(buf, "no enveloped recipient");
	reason_of("\r\n  \n\tfirst  \r\nsecond\n", 22, buf, sizeof(buf));
	assert_string_equal(buf, "first");
	reason_of("", 0, buf, sizeof(buf));
	assert_string_equal(buf, "");
	reason_of(" \r\n\n", 4, buf, sizeof(buf));
	assert_string_equal(buf, "");
	http_resp_reason(NULL, buf, sizeof(buf));
	assert_string_equal(buf, "");
}

static void
test_control_and_binary_escaped(void **state)
{
	char buf[4 * HTTP_REASON_MAX + 1];
	static const char body[] = {'a', '\x1b', '[', '2', 'J', 'b', '\0', 'c', '\x7f', '\xe9'};
	(void)state;

	reason_of(body, sizeof(body), buf, sizeof(buf));
	assert_string_equal(buf, "a\\x1b[2Jb\\x00c\\x7f\\xe9");
}

static void
test_length_capped(void **state)
{
	char body[1000], buf[4 * HTTP_REASON_MAX + 1], small[10];
	(void)state;

	memset(body, 'x', sizeof(body));
	reason_of(body, sizeof(body), buf, sizeof(buf));
	assert_int_equal(strlen(buf), HTTP_REASON_MAX);
	/* every byte escaped still fits the documented buffer */
	memset(body, '\x01', sizeof(body));
	reason_of(body, sizeof(body), buf, sizeof(buf));
	assert_int_equal(strlen(buf), 4 * HTTP_REASON_MAX);
	/* a small buffer gets whole escapes only */
	reason_of(body, sizeof(body), small, sizeof(small));
	assert_string_equal(small, "\\x01\\x01");
}

/* max_body 0 is a bug, refused before any connection (it used to reject every byte). */
static void
test_max_body_zero_refused(void **state)
{
	struct http_opts o;
	struct http_resp *resp = NULL;
	unsigned long before = http_request_count();
	int r;

	(void)state;
	memset(&o, 0, sizeof(o));
	o.timeout_s = 5;
	begin_capture();
	r = http_get("http://127.0.0.1:9/scep", &o, &resp);
	end_capture();
	assert_int_equal(r, P11E_ERR_INTERNAL);
	assert_null(resp);
	assert_int_equal(http_request_count(), before);
	assert_non_null(strstr(errbuf, "request to http://127.0.0.1:9/scep: no size limit for the "
	                               "answer (a bug)"));
}

/* max_body bytes are accepted, one more is not. */
static void
test_max_body_boundary(void **state)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	                           "Connection: close\r\n\r\n";
	struct http_opts o;
	struct http_resp *resp = NULL;
	char url[64];
	int port, r;
	pid_t pid;

	(void)state;
	pid = serve(head, "0123456789", 10, 2, &port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
	memset(&o, 0, sizeof(o));
	o.timeout_s = 10;
	o.max_body = 10;
	assert_int_equal(http_get(url, &o, &resp), 0);
	assert_int_equal(resp->len, 10);
	assert_memory_equal(resp->body, "0123456789", 10);
	http_resp_free(resp);
	resp = NULL;
	o.max_body = 9;
	begin_capture();
	r = http_get(url, &o, &resp);
	end_capture();
	assert_int_equal(r, P11E_ERR_NETWORK);
	assert_null(resp);
	assert_non_null(strstr(errbuf, "exceeds 9 bytes"));
	reap(pid);
}

/* n random letters and digits into s (n + 1 bytes). */
static void
random_text(char *s, size_t n)
{
	static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	int fd = open("/dev/urandom", O_RDONLY);
	size_t i;

	assert_true(fd >= 0);
	assert_int_equal(read(fd, s, n), (ssize_t)n);
	close(fd);
	for (i = 0; i < n; i++)
		s[i] = set[(unsigned char)s[i] % (sizeof(set) - 1)];
	s[n] = '\0';
}

static void
base64(const unsigned char *in, size_t n, char *out)
{
	static const char b[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		out[o++] = b[in[i] >> 2];
		out[o++] = b[(in[i] & 3) << 4 | in[i + 1] >> 4];
		out[o++] = b[(in[i + 1] & 15) << 2 | in[i + 2] >> 6];
		out[o++] = b[in[i + 2] & 63];
	}
	if (n - i == 1) {
		out[o++] = b[in[i] >> 2];
		out[o++] = b[(in[i] & 3) << 4];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		out[o++] = b[in[i] >> 2];
		out[o++] = b[(in[i] & 3) << 4 | in[i + 1] >> 4];
		out[o++] = b[(in[i + 1] & 15) << 2];
		out[o++] = '=';
	}
	out[o] = '\0';
}

/* UTF-16LE of the ASCII string s into out (2 * strlen(s) bytes). */
static size_t
utf16le(const char *s, unsigned char *out)
{
	size_t i, n = strlen(s);

	for (i = 0; i < n; i++) {
		out[2 * i] = (unsigned char)s[i];
		out[2 * i + 1] = 0;
	}
	return 2 * n;
}

/* 1 (and a line on stderr) when a dump of this process would hold the n bytes at p. */
static int
dumped(const char *what, const void *p, size_t n)
{
	struct memscan_hit hit;

	memscan(p, n, &hit);
	if (hit.dumped != 0)
		print_error("%s: found in %d mapping(s) that a core dump holds\n", what,
		            hit.dumped);
	return hit.dumped != 0;
}

/*
 * After a request with Basic credentials that got a page holding a challenge,
 * and http_resp_free, no copy of the password (as sent: base64 of user:pw),
 * of the page's challenge (UTF-16LE) or of the password as given is left
 * where a core dump would see it: libcurl's copies are wiped (http_init's
 * allocator), the body too. Long random secrets, and their tails searched
 * (free() overwrites the first bytes of a block).
 */
static void
test_request_leaves_no_secret(void **state)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
	                           "Connection: close\r\n\r\n";
	struct http_opts o;
	struct http_resp *resp = NULL;
	char *pw = NULL, *ch = NULL, *page = NULL, *userpw = NULL, *b64 = NULL, url[64];
	unsigned char *page16 = NULL, *ch16 = NULL, *pw16 = NULL;
	size_t page16_len, ch16_len, pw16_len;
	struct memscan_hit hit;
	int port, found = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(secret_alloc(41, (void **)&pw), 0);
	assert_int_equal(secret_alloc(41, (void **)&ch), 0);
	assert_int_equal(secret_alloc(256, (void **)&page), 0);
	assert_int_equal(secret_alloc(512, (void **)&page16), 0);
	assert_int_equal(secret_alloc(82, (void **)&ch16), 0);
	assert_int_equal(secret_alloc(82, (void **)&pw16), 0);
	assert_int_equal(secret_alloc(64, (void **)&userpw), 0);
	assert_int_equal(secret_alloc(128, (void **)&b64), 0);
	random_text(pw, 40);
	random_text(ch, 40);
	snprintf(page, 256, "<HTML>The enrollment challenge password is: <B> %s </B></HTML>", ch);
	page16_len = utf16le(page, page16);
	ch16_len = utf16le(ch, ch16);
	pw16_len = utf16le(pw, pw16);
	snprintf(userpw, 64, "enroll:%s", pw);
	base64((const unsigned char *)userpw, strlen(userpw), b64);

	pid = serve(head, page16, page16_len, 1, &port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/CertSrv/MSCEP_ADMIN/", port);
	memset(&o, 0, sizeof(o));
	o.timeout_s = 10;
	o.max_body = 4096;
	o.secret_body = 1;
	o.user = "enroll";
	o.password = pw;
	o.auth = HTTP_AUTH_BASIC;
	assert_int_equal(http_get(url, &o, &resp), 0);
	assert_int_equal(resp->status, 200);
	assert_int_equal(resp->len, page16_len);
	/* The page is held where no dump goes (and the scan finds it there). */
	assert_true(secret_in_arena(resp->body));
	if (!MEMSCAN_EXACT) {
		http_resp_free(resp);
		reap(pid);
		secret_release(pw);
		secret_release(ch);
		secret_release(page);
		secret_release(page16);
		secret_release(ch16);
		secret_release(pw16);
		secret_release(userpw);
		secret_release(b64);
		skip();
	}
	memscan(ch16 + 16, ch16_len - 16, &hit);
	assert_true(hit.excluded > 0);
	found += dumped("the page's challenge (UTF-16LE), while held", ch16 + 16, ch16_len - 16);
	http_resp_free(resp);
	reap(pid);

	found += dumped("the password", pw + 16, strlen(pw) - 16);
	found += dumped("the password in UTF-16LE", pw16 + 32, pw16_len - 32);
	found += dumped("the Authorization header's base64", b64 + 24, strlen(b64) - 24);
	found += dumped("the page's challenge (UTF-16LE)", ch16 + 16, ch16_len - 16);
	assert_int_equal(found, 0);

	secret_release(pw);
	secret_release(ch);
	secret_release(page);
	secret_release(page16);
	secret_release(ch16);
	secret_release(pw16);
	secret_release(userpw);
	secret_release(b64);
}

/* The redirect check, judged where libcurl follows (http_curl.c; location_same_https). */
static void
test_same_host_https(void **state)
{
	const char *from = "https://ndes.example.com/CertSrv/MSCEP_ADMIN";

	(void)state;
	assert_int_equal(
	    http_same_host_https(from, "https://ndes.example.com/CertSrv/mscep_admin/"), 1);
	assert_int_equal(http_same_host_https(from, "https://NDES.Example.COM/x"), 1);
	assert_int_equal(http_same_host_https(from, "https://ndes.example.com:443/x"), 1);
	assert_int_equal(http_same_host_https(from, "HTTPS://ndes.example.com/x"), 1);
	/* another host, also one that only shares a suffix */
	assert_int_equal(http_same_host_https(from, "https://evil.example.com/x"), 0);
	assert_int_equal(http_same_host_https(from, "https://ndes.example.com.evil.net/x"), 0);
	/* http: Basic or anything else would go in clear */
	assert_int_equal(http_same_host_https(from, "http://ndes.example.com/x"), 0);
	/* the same host on another port is another server */
	assert_int_equal(http_same_host_https(from, "https://ndes.example.com:8443/x"), 0);
	assert_int_equal(
	    http_same_host_https("https://ndes.example.com:8443/a", "https://ndes.example.com/b"),
	    0);
	assert_int_equal(http_same_host_https("https://ndes.example.com:8443/a",
	                                      "https://ndes.example.com:8443/b"),
	                 1);
	/* the http -> https upgrade on the default ports */
	assert_int_equal(
	    http_same_host_https("http://ndes.example.com/a", "https://ndes.example.com/a"), 1);
	assert_int_equal(
	    http_same_host_https("http://ndes.example.com:8080/a", "https://ndes.example.com/a"),
	    0);
	/* credentials in the target, unparsable, other schemes */
	assert_int_equal(http_same_host_https(from, "https://user:pw@ndes.example.com/x"), 0);
	assert_int_equal(http_same_host_https(from, "https://user@ndes.example.com/x"), 0);
	assert_int_equal(http_same_host_https(from, "/relative"), 0);
	assert_int_equal(http_same_host_https(from, "ftp://ndes.example.com/x"), 0);
	assert_int_equal(http_same_host_https("not a url", "https://ndes.example.com/"), 0);
	assert_int_equal(http_same_host_https(NULL, from), 0);
	assert_int_equal(http_same_host_https(from, NULL), 0);
	/* IPv6 literals */
	assert_int_equal(http_same_host_https("https://[::1]:8443/a", "https://[::1]:8443/b"), 1);
	assert_int_equal(http_same_host_https("https://[::1]:8443/a", "https://[::2]:8443/b"), 0);
}

static int
group_setup(void **state)
{
	(void)state;
	if ((capture_fd = mkstemp(capture_path)) < 0)
		return -1;
	unlink(capture_path);
	http_set_remote(http_request_here); /* as in the network process */
	return http_init();
}

static int
group_teardown(void **state)
{
	(void)state;
	http_cleanup();
	close(capture_fd);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_same_host_https),
	    cmocka_unit_test(test_first_line),
	    cmocka_unit_test(test_control_and_binary_escaped),
	    cmocka_unit_test(test_length_capped),
	    cmocka_unit_test(test_max_body_zero_refused),
	    cmocka_unit_test(test_max_body_boundary),
	    cmocka_unit_test(test_request_leaves_no_secret),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
