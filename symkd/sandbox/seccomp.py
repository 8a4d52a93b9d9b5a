"""The seccomp filter every sandbox process runs under: no namespaces, no mounts, no ptrace.

Why a filter and not bubblewrap's ``--disable-userns``: that option needs ``--unshare-user``,
whose user namespace maps a single uid, while the zygote must become the container's own host
uid (RLIMIT_NPROC is counted per host uid); it also leaves mount(2) alone and does nothing in
"rlimit" mode. The zygote installs this filter on itself (after PR_SET_NO_NEW_PRIVS, before
any model code), so it binds every worker and every process model code starts, in both modes.

Denied with EPERM: unshare, setns, clone with any CLONE_NEW* flag (a new user namespace would
let model code mount a tmpfs outside every limit), mount and the new mount API, umount2,
pivot_root, chroot, and ptrace / process_vm_readv / process_vm_writev / pidfd_getfd (so no
sandbox process can read or steal from another, such as the zygote's control socket).
clone3 gets ENOSYS, because seccomp cannot read its flags: libc then falls back to clone.
System calls of another ABI (i386 or x32 from an x86-64 process) get ENOSYS.

The program is classic BPF built here and handed to the zygote as hex in its config.
"""

from __future__ import annotations

import os
import struct

_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
EPERM, ENOSYS = 1, 38
#: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (NEWTIME overlaps clone's
#: exit-signal byte; it is reachable only through unshare and clone3, both denied)
CLONE_NEW_MASK = 0x7E020000

_COMMON = {"open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
           "fspick": 433, "pidfd_getfd": 438, "mount_setattr": 442, "open_tree_attr": 467}  # fmt: skip
ARCHES = {
    "x86_64": (0xC000003E, 56, 435, {
        "ptrace": 101, "pivot_root": 155, "chroot": 161, "mount": 165, "umount2": 166, "unshare": 272,
        "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, **_COMMON}),
    "aarch64": (0xC00000B7, 220, 435, {
        "umount2": 39, "mount": 40, "pivot_root": 41, "chroot": 51, "unshare": 97, "ptrace": 117,
        "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, **_COMMON}),
}  # fmt: skip


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter for ``machine`` (default this one's) as sock_filter bytes; None if unknown."""
    arch = ARCHES.get(machine or os.uname().machine)
    if arch is None:
        return None
    audit_arch, clone, clone3, denied = arch
    numbers = sorted(denied.values())
    n = len(numbers)
    # 0 ld arch | 1 jeq arch | 2 ld nr | 3 jge x32 | 4 jeq clone | 5 jeq clone3 | 6.. jeq denied |
    # 6+n allow | 7+n ld clone flags | 8+n jset | 9+n allow | 10+n EPERM | 11+n ENOSYS (jumps go forward)
    flags, eperm, enosys = 7 + n, 10 + n, 11 + n
    prog = [
        _insn(_LD_W_ABS, 4),
        _insn(_JEQ_K, audit_arch, 0, enosys - 2),
        _insn(_LD_W_ABS, 0),
        _insn(_JGE_K, 0x40000000, enosys - 4, 0),
        _insn(_JEQ_K, clone, flags - 5, 0),
        _insn(_JEQ_K, clone3, enosys - 6, 0),
    ]
    prog += [_insn(_JEQ_K, nr, eperm - (7 + i), 0) for i, nr in enumerate(numbers)]
    prog += [_insn(_RET_K, _ALLOW),
             _insn(_LD_W_ABS, 16),  # low 32 bits of args[0]: clone's flags on both ABIs
             _insn(_JSET_K, CLONE_NEW_MASK, eperm - (flags + 2), 0),
             _insn(_RET_K, _ALLOW), _insn(_RET_K, _ERRNO | EPERM), _insn(_RET_K, _ERRNO | ENOSYS)]  # fmt: skip
    return b"".join(prog)
