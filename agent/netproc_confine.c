/*
 * netproc_confine.c: the network process's confinement (netproc_confine.h).
 */
#define _GNU_SOURCE /* setresuid */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <linux/landlock.h>
#include <seccomp.h>

#include "err.h"
#include "log.h"
#include "netproc_confine.h"
#include "netproc_connect.h"

extern char **environ;

/* As root: the user nobody from now on, for good. */
static int
drop_root(void)
{
	struct passwd *pw;
	uid_t uid = 65534;
	gid_t gid = 65534;

	if (geteuid() != 0)
		return 0;
	if ((pw = getpwnam("nobody")) != NULL) {
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
	    setresuid(uid, uid, uid) != 0) {
		log_error("network process: cannot become the user nobody: %s", strerror(errno));
		return P11E_ERR_INTERNAL;
	}
	if (setuid(0) == 0) {
		log_error("network process: still able to become root after dropping it");
		return P11E_ERR_INTERNAL;
	}
	return 0;
}

/* Ends with the process that started it (set after the change of user, which clears it). */
static int
die_with_parent(pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
		log_error("network process: cannot set its parent-death signal: %s",
		          strerror(errno));
		return P11E_ERR_INTERNAL;
	}
	if (getppid() != parent) /* the parent ended before the signal was set */
		_exit(P11E_EXIT_SOFTWARE);
	return 0;
}

/*
 * The NSS modules of the hosts database other than those inside libc, loaded
 * now: once confined, no library can be mapped any more.
 */
static void
preload_nss(void)
{
	char line[512], name[64], *p, *save = NULL;
	FILE *f = fopen("/etc/nsswitch.conf", "re");

	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "hosts:", 6) != 0)
			continue;
		for (p = strtok_r(line + 6, " \t\n", &save); p != NULL;
		     p = strtok_r(NULL, " \t\n", &save)) {
			if (p[0] == '[' || strcmp(p, "files") == 0 || strcmp(p, "dns") == 0 ||
			    strchr(p, ']') != NULL)
				continue;
			snprintf(name, sizeof(name), "libnss_%s.so.2", p);
			(void)dlopen(name, RTLD_NOW | RTLD_GLOBAL);
		}
	}
	fclose(f);
}

/* Access rights of later Landlock ABIs than Debian 12's headers know. */
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

/* The Landlock ABI applied, 0 for none (netproc_landlock_abi). */
static int landlock_applied;

int
netproc_landlock_abi(void)
{
	return landlock_applied;
}

/*
 * What the network process may still read once confined (each, if it exists,
 * with what is beneath it): the resolver's configuration, TLS's (OpenSSL's
 * configuration and the system's CA store, which libcurl reads when [scep]
 * ca_file is not set), time zones for its log lines, and its own /proc entry
 * (glibc and the sanitizers read it). Not the configuration, the PIN file,
 * state_dir, the trust dir or a token's files, whoever owns them.
 */
static const char *const readable[] = {
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/ssl",
    "/usr/lib/ssl",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/usr/share/zoneinfo",
    "/proc/self",
};

/* One Landlock rule: read path (and beneath it, for a directory). 0, or -1 (errno). */
static int
allow_read(int ruleset, const char *path)
{
	struct landlock_path_beneath_attr pb = {0, -1};
	struct stat st;
	int r = -1;

	/* O_PATH follows a symbolic link: the rule holds for what it names */
	if ((pb.parent_fd = open(path, O_PATH | O_CLOEXEC)) == -1)
		return errno == ENOENT || errno == ENOTDIR || errno == EACCES ? 0 : -1;
	if (fstat(pb.parent_fd, &st) == 0) {
		pb.allowed_access = LANDLOCK_ACCESS_FS_READ_FILE |
		                    (S_ISDIR(st.st_mode) ? LANDLOCK_ACCESS_FS_READ_DIR : 0);
		r = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb,
		                 0);
	}
	close(pb.parent_fd);
	return r;
}

/*
 * Where the kernel has Landlock: from now on the files the process may open
 * are those of readable[], for reading only, whatever its user may read (the
 * user nobody as root; else the user who runs p11enroll, who owns the PIN
 * file and state_dir). Without it (a kernel built without, or booted with
 * Landlock off) the process goes on, its user and filter its only bounds.
 * Needs no_new_privs. P11E_ERR_INTERNAL (logged) when Landlock is there but
 * cannot be applied.
 */
static int
landlock(void)
{
	struct landlock_ruleset_attr ra;
	size_t i;
	int abi, fd;

	abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 1)
		return 0; /* no Landlock here: its user and filter bound what it reads */
	memset(&ra, 0, sizeof(ra));
	ra.handled_access_fs = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
	                       LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
	                       LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
	                       LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
	                       LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
	                       LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
	                       LANDLOCK_ACCESS_FS_MAKE_SYM |
	                       (abi >= 2 ? LANDLOCK_ACCESS_FS_REFER : 0) |
	                       (abi >= 3 ? LANDLOCK_ACCESS_FS_TRUNCATE : 0) |
	                       (abi >= 5 ? LANDLOCK_ACCESS_FS_IOCTL_DEV : 0);
	if ((fd = (int)syscall(SYS_landlock_create_ruleset, &ra, sizeof(ra), 0)) == -1) {
		log_error("network process: cannot create its Landlock ruleset: %s",
		          strerror(errno));
		return P11E_ERR_INTERNAL;
	}
	for (i = 0; i < sizeof(readable) / sizeof(readable[0]); i++)
		if (allow_read(fd, readable[i]) != 0) {
			log_error("network process: cannot let Landlock allow reading %s: %s",
			          readable[i], strerror(errno));
			close(fd);
			return P11E_ERR_INTERNAL;
		}
	if (syscall(SYS_landlock_restrict_self, fd, 0) != 0) {
		log_error("network process: cannot apply its Landlock ruleset: %s",
		          strerror(errno));
		close(fd);
		return P11E_ERR_INTERNAL;
	}
	close(fd);
	landlock_applied = abi;
	return 0;
}

/*
 * The system calls HTTP(S) over libcurl and OpenSSL needs; any other kills
 * the process. Files open read-only (others get EACCES); no executable
 * mapping, so no library can be loaded; threads (libcurl's resolver), not
 * processes.
 */
static int
load_filter(void)
{
	static const int plain[] = {
	    SCMP_SYS(read),
	    SCMP_SYS(write),
	    SCMP_SYS(readv),
	    SCMP_SYS(writev),
	    SCMP_SYS(pread64),
	    SCMP_SYS(close),
	    SCMP_SYS(fstat),
	    SCMP_SYS(newfstatat),
	    SCMP_SYS(statx),
	    SCMP_SYS(lseek),
	    SCMP_SYS(munmap),
	    SCMP_SYS(mremap),
	    SCMP_SYS(madvise),
	    SCMP_SYS(brk),
	    SCMP_SYS(rt_sigaction),
	    SCMP_SYS(rt_sigprocmask),
	    SCMP_SYS(rt_sigreturn),
	    SCMP_SYS(sigaltstack),
	    SCMP_SYS(poll),
	    SCMP_SYS(ppoll),
	    SCMP_SYS(select),
	    SCMP_SYS(pselect6),
	    SCMP_SYS(epoll_create1),
	    SCMP_SYS(epoll_ctl),
	    SCMP_SYS(epoll_wait),
	    SCMP_SYS(epoll_pwait),
	    SCMP_SYS(eventfd2),
	    SCMP_SYS(pipe2),
	    SCMP_SYS(sendto),
	    SCMP_SYS(recvfrom),
	    SCMP_SYS(sendmsg),
	    SCMP_SYS(recvmsg),
	    SCMP_SYS(sendmmsg),
	    SCMP_SYS(recvmmsg),
	    SCMP_SYS(shutdown),
	    SCMP_SYS(getsockname),
	    SCMP_SYS(getpeername),
	    SCMP_SYS(setsockopt),
	    SCMP_SYS(getsockopt),
	    SCMP_SYS(fcntl),
	    SCMP_SYS(ioctl),
	    SCMP_SYS(dup),
	    SCMP_SYS(dup3),
	    SCMP_SYS(getdents64),
	    SCMP_SYS(access),
	    SCMP_SYS(faccessat),
	    SCMP_SYS(faccessat2),
	    SCMP_SYS(readlink),
	    SCMP_SYS(getcwd),
	    SCMP_SYS(uname),
	    SCMP_SYS(getpid),
	    SCMP_SYS(gettid),
	    SCMP_SYS(getuid),
	    SCMP_SYS(geteuid),
	    SCMP_SYS(getgid),
	    SCMP_SYS(getegid),
	    SCMP_SYS(getresuid),
	    SCMP_SYS(getresgid),
	    SCMP_SYS(futex),
	    SCMP_SYS(set_robust_list),
	    SCMP_SYS(get_robust_list),
	    SCMP_SYS(rseq),
	    SCMP_SYS(clock_gettime),
	    SCMP_SYS(clock_getres),
	    SCMP_SYS(gettimeofday),
	    SCMP_SYS(time),
	    SCMP_SYS(nanosleep),
	    SCMP_SYS(clock_nanosleep),
	    SCMP_SYS(sched_yield),
	    SCMP_SYS(sched_getaffinity),
	    SCMP_SYS(getrandom),
	    SCMP_SYS(sysinfo),
	    SCMP_SYS(prlimit64),
	    SCMP_SYS(getrlimit),
	    SCMP_SYS(getrusage),
	    SCMP_SYS(exit),
	    SCMP_SYS(exit_group),
	    SCMP_SYS(set_tid_address),
	    SCMP_SYS(mlock),
	    SCMP_SYS(munlock),
	    SCMP_SYS(membarrier),
	    SCMP_SYS(tgkill),
	    SCMP_SYS(restart_syscall),
	};
	static const int write_flags[] = {O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND};
	scmp_filter_ctx ctx;
	size_t i;
	int rc = 0;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		log_error("network process: cannot set no_new_privs: %s", strerror(errno));
		return P11E_ERR_INTERNAL;
	}
	if (landlock() != 0)
		return P11E_ERR_INTERNAL;
	if ((ctx = seccomp_init(SCMP_ACT_KILL_PROCESS)) == NULL) {
		log_error("network process: cannot set up its seccomp filter");
		return P11E_ERR_INTERNAL;
	}
	for (i = 0; i < sizeof(plain) / sizeof(plain[0]) && rc == 0; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, plain[i], 0);
	/* Files: read-only. Opening one for writing fails (EACCES), it does not kill:
	 * OpenSSL and the resolver only read. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
		                      SCMP_A2(SCMP_CMP_MASKED_EQ,
		                              O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0));
	for (i = 0; i < sizeof(write_flags) / sizeof(write_flags[0]) && rc == 0; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 1,
		                      SCMP_A2(SCMP_CMP_MASKED_EQ, write_flags[i], write_flags[i]));
	/* Memory: never executable (no library can be loaded, no code written). */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
		                      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
		                      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	/* Sockets: none of its own. Its connections are made by the process that started it
	 * and passed over NETPROC_CONNECT_FD (netproc_connect.h): socket() fails (EACCES),
	 * bind() kills, and connect() never reaches the kernel: the filter answers 0. Every
	 * socket the process can hold is connected already; libcurl 7.88 calls connect() on
	 * the socket its CURLOPT_SOCKOPTFUNCTION calls connected, and takes the kernel's
	 * EISCONN for a failure. A pair of connected Unix sockets is libcurl's wake-up. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 0);
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(0), SCMP_SYS(connect), 0);
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1,
		                      SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0));
	/* Threads (libcurl's threaded resolver), never a new process. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
		                      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	/* glibc tries clone3 first and falls back to clone on ENOSYS; its flags are in a struct
	 * seccomp cannot read. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc != 0) {
		log_error("network process: cannot load its seccomp filter: %s", strerror(-rc));
		return P11E_ERR_INTERNAL;
	}
	return 0;
}

#ifdef P11E_TEST_HOOKS
/* "IPV4:PORT" into a, or -1. */
static int
test_addr(const char *s, struct sockaddr_in *a)
{
	char ip[INET_ADDRSTRLEN];
	const char *colon = strrchr(s, ':');

	memset(a, 0, sizeof(*a));
	if (colon == NULL || (size_t)(colon - s) >= sizeof(ip))
		return -1;
	memcpy(ip, s, (size_t)(colon - s));
	ip[colon - s] = '\0';
	a->sin_family = AF_INET;
	a->sin_port = htons((unsigned short)atoi(colon + 1));
	return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : -1;
}

/* A connection of its own to "IPV4:PORT": -1 (errno) when refused, else the socket. */
static int
test_connect(const char *s)
{
	struct sockaddr_in a;
	int fd;

	if (test_addr(s, &a) != 0 || (fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	return connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 ? fd : -1;
}

/* A connection to "IPV4:PORT" asked of the process that started it: the socket, or -1. */
static int
test_ask(const char *s)
{
	struct sockaddr_in a;
	int err = 0, fd;

	if (test_addr(s, &a) != 0)
		return -1;
	fd = netconn_ask(NETPROC_CONNECT_FD, (struct sockaddr *)&a, sizeof(a), &err);
	errno = err;
	return fd;
}

/*
 * Tests only (never in the installed program): after confinement, the
 * network process tries what P11E_TEST_NETPROC_TRY says ("open:PATH",
 * "write:PATH", "dlopen:PATH", "exec:PATH", "mmap-exec": executable memory,
 * "connect:IPV4:PORT": a connection of its own, "ask:IPV4:PORT": a connection
 * asked of p11enroll) and stops with what became of it.
 */
static void
test_escape(void)
{
	const char *t = getenv("P11E_TEST_NETPROC_TRY");
	char *const argv[] = {"sh", NULL};
	int fd;

	if (t == NULL)
		return;
	if (strncmp(t, "connect:", 8) == 0)
		fd = test_connect(t + 8);
	else if (strncmp(t, "ask:", 4) == 0)
		fd = test_ask(t + 4);
	else if (strncmp(t, "open:", 5) == 0)
		fd = open(t + 5, O_RDONLY | O_CLOEXEC);
	else if (strncmp(t, "write:", 6) == 0)
		fd = open(t + 6, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	else if (strncmp(t, "dlopen:", 7) == 0)
		fd = dlopen(t + 7, RTLD_NOW) != NULL ? 0 : -1;
	else if (strncmp(t, "exec:", 5) == 0)
		fd = execve(t + 5, argv, environ);
	else if (strcmp(t, "mmap-exec") == 0)
		fd = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) ==
		             MAP_FAILED
		         ? -1
		         : 0;
	else
		return;
	if (fd >= 0) {
		log_error("network process: test escape %s SUCCEEDED", t);
		return;
	}
	log_error("network process: test escape %s refused: %s", t,
	          strncmp(t, "dlopen:", 7) == 0 ? dlerror() : strerror(errno));
	_exit(P11E_EXIT_SOFTWARE);
}
#endif

int
netproc_confine(void)
{
	pid_t parent = getppid();

	(void)prctl(PR_SET_NAME, "p11enroll-net", 0, 0, 0);
	preload_nss();
	if (drop_root() != 0 || die_with_parent(parent) != 0 || load_filter() != 0)
		return P11E_ERR_INTERNAL;
#ifdef P11E_TEST_HOOKS
	test_escape();
#endif
	return 0;
}
