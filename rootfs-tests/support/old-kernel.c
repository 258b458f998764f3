/* old-kernel: runs a command as if on Linux 4.18 (RHEL 8's kernel): every system call added after
 * 4.18 fails with ENOSYS, through a seccomp filter. On x86_64, 4.18's last system call is rseq
 * (334); every one added since is numbered from 424 up (openat2, mount_setattr, clone3,
 * close_range, pidfd_*, faccessat2, ...). Other architectures: the command runs unfiltered,
 * and the helper says so on stderr.
 *
 * usage: old-kernel COMMAND [ARG...] */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define LAST_SYSCALL_OF_4_18 334

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: old-kernel COMMAND [ARG...]\n");
        return 2;
    }
#if defined(__x86_64__)
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* x32 system calls carry bit 30; gpurun never makes them. */
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, LAST_SYSCALL_OF_4_18, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        fprintf(stderr, "old-kernel: cannot install the seccomp filter: %s\n", strerror(errno));
        return 2;
    }
#else
    fprintf(stderr, "old-kernel: not x86_64: running %s unfiltered\n", argv[1]);
#endif
    execvp(argv[1], argv + 1);
    fprintf(stderr, "old-kernel: %s: %s\n", argv[1], strerror(errno));
    return 127;
}
