"""Kernel struct member offsets the eBPF code needs, read from BTF and passed as -D constants.

Each constant names the member it stands for; a kernel that lacks one fails at start with the
member's name, instead of the program reading the wrong bytes.
"""

from __future__ import annotations

from otel_fim.kernel.btf import Btf

# C constant -> (struct, member path)
MEMBERS: dict[str, tuple[str, str]] = {
    "OFF_TASK_REAL_PARENT": ("task_struct", "real_parent"),
    "OFF_TASK_TGID": ("task_struct", "tgid"),
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_TASK_FS": ("task_struct", "fs"),
    "OFF_TASK_CRED": ("task_struct", "cred"),
    "OFF_CRED_EUID": ("cred", "euid"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDTABLE_MAX_FDS": ("fdtable", "max_fds"),
    "OFF_FDTABLE_FD": ("fdtable", "fd"),
    "OFF_FILE_F_PATH": ("file", "f_path"),
    "OFF_PATH_MNT": ("path", "mnt"),
    "OFF_PATH_DENTRY": ("path", "dentry"),
    "OFF_FS_STRUCT_ROOT": ("fs_struct", "root"),
    "OFF_FS_STRUCT_PWD": ("fs_struct", "pwd"),
    "OFF_DENTRY_D_PARENT": ("dentry", "d_parent"),
    "OFF_DENTRY_D_NAME": ("dentry", "d_name"),
    "OFF_DENTRY_D_INODE": ("dentry", "d_inode"),
    "OFF_QSTR_LEN": ("qstr", "len"),
    "OFF_QSTR_NAME": ("qstr", "name"),
    "OFF_INODE_I_INO": ("inode", "i_ino"),
    "OFF_INODE_I_MODE": ("inode", "i_mode"),
    "OFF_INODE_I_UID": ("inode", "i_uid"),
    "OFF_INODE_I_GID": ("inode", "i_gid"),
    "OFF_INODE_I_SB": ("inode", "i_sb"),
    "OFF_INODE_I_NLINK": ("inode", "i_nlink"),
    "OFF_INODE_I_GENERATION": ("inode", "i_generation"),
    "OFF_INODE_I_FLAGS": ("inode", "i_flags"),
    "OFF_SUPER_BLOCK_S_DEV": ("super_block", "s_dev"),
    "OFF_VFSMOUNT_MNT_ROOT": ("vfsmount", "mnt_root"),
    "OFF_MOUNT_MNT": ("mount", "mnt"),
    "OFF_MOUNT_MNT_PARENT": ("mount", "mnt_parent"),
    "OFF_MOUNT_MNT_MOUNTPOINT": ("mount", "mnt_mountpoint"),
    "OFF_MOUNT_MNT_ID": ("mount", "mnt_id"),
}


# The in-kernel name lookup (bpf/name_lookup.h) walks a directory's children list and reads dentry
# flags. Kernels before 6.8 link children differently (d_subdirs), and before 6.14 the flags were
# #defines, absent from BTF: there the lookup is compiled out and names are left to user space.
NAME_LOOKUP_MEMBERS: dict[str, tuple[str, str]] = {
    "OFF_DENTRY_D_FLAGS": ("dentry", "d_flags"),
    "OFF_DENTRY_D_CHILDREN": ("dentry", "d_children"),
    "OFF_DENTRY_D_SIB": ("dentry", "d_sib"),
    "OFF_DENTRY_D_HASH_PPREV": ("dentry", "d_hash.pprev"),
    "OFF_QSTR_HASH_LEN": ("qstr", "hash_len"),
    "OFF_MOUNT_MNT_MOUNTS": ("mount", "mnt_mounts"),
    "OFF_MOUNT_MNT_CHILD": ("mount", "mnt_child"),
}
NAME_LOOKUP_ENUMS = (
    "DCACHE_MOUNTED",
    "DCACHE_NEED_AUTOMOUNT",
    "DCACHE_MANAGE_TRANSIT",
    "DCACHE_ENTRY_TYPE",
    "DCACHE_DIRECTORY_TYPE",
    "DCACHE_SYMLINK_TYPE",
)


def name_lookup_constants(btf: Btf) -> dict[str, int]:
    """-D constants for the name lookup: its offsets and flags plus FIM_NAME_LOOKUP=1, or only
    FIM_NAME_LOOKUP=0 when this kernel's BTF lacks any of them."""
    if not all(btf.has_member(s, m) for s, m in NAME_LOOKUP_MEMBERS.values()):
        return {"FIM_NAME_LOOKUP": 0}
    values = {name: btf.enumerator(name) for name in NAME_LOOKUP_ENUMS}
    if any(v is None for v in values.values()):
        return {"FIM_NAME_LOOKUP": 0}
    return {"FIM_NAME_LOOKUP": 1, **read_offsets(btf, NAME_LOOKUP_MEMBERS), **values}  # type: ignore[dict-item]


def read_offsets(btf: Btf, members: dict[str, tuple[str, str]] = MEMBERS) -> dict[str, int]:
    return {name: btf.offset_of(struct, member) for name, (struct, member) in members.items()}


def cflags(offsets: dict[str, int]) -> list[str]:
    return [f"-D{name}={value}" for name, value in sorted(offsets.items())]
