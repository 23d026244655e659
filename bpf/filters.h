/* The in-kernel stage of the two-stage evaluation: drop what no rule can match before it costs a
 * path walk, a ring-buffer slot and user-space time.
 *
 *   policy     per event type: accept all / deny unless approved / drop (no rule needs the type)
 *   approvers  from the rules at load time (user space fills the maps): the open-flag gate,
 *              basenames, directory prefixes (LPM trie), and inodes of watched files and
 *              directories -- so hard links and bind mounts are caught too
 *   discarders learned at run time: inodes user space proved can never match, valid while their
 *              revision equals the global one (bumped on rename/link/unlink/rmdir and reloads)
 *
 * Approvers may over-approve (user space re-checks every event); they must never under-approve. */
#ifndef OTEL_FIM_FILTERS_H
#define OTEL_FIM_FILTERS_H

BPF_ARRAY(policies, struct fim_policy, FIM_TYPE_MAX);
BPF_HASH(approver_basenames, struct fim_basename_key, u32, 4096);
BPF_LPM_TRIE(approver_prefixes, struct fim_prefix_key, u32, 4096);
BPF_HASH(approver_inodes, struct fim_inode_key, struct fim_inode_approver, 4096);
BPF_TABLE("lru_hash", struct fim_inode_key, struct fim_discarder, discarders, 16384);
BPF_ARRAY(filter_state, u64, 4);

static __always_inline struct fim_policy *policy_of(u32 type)
{
    return policies.lookup(&type);
}

static __always_inline u64 current_revision(void)
{
    u32 idx = FIM_STATE_REVISION;
    u64 *rev = filter_state.lookup(&idx);
    return rev ? *rev : 0;
}

/* A rename, link or rmdir may move a file or directory into a watched place, give it another
 * name, or free a directory's inode number: every discarder learned before is stale. (An unlinked
 * file's inode number is told apart by its i_generation instead, so deletions, the most common
 * churn, leave discarders valid.) */
static __always_inline void invalidate_discarders(void)
{
    u32 idx = FIM_STATE_REVISION;
    u64 *rev = filter_state.lookup(&idx);
    if (rev)
        __sync_fetch_and_add(rev, 1);
}

/* The open-flag gate: read-only opens die here, before anything is stored, when no rule wants them. */
static __always_inline int open_gate_passes(struct fim_policy *pol, u32 flags)
{
    if (!pol->gate)
        return 1;
    if (flags & pol->flags_any)
        return 1;
    return pol->allow_rdonly && (flags & 3) == 0;
}

static __always_inline void inode_key(struct fim_inode_key *k, u64 inode)
{
    k->ino = rd_ptr(inode + OFF_INODE_I_INO);
    k->dev = rd_u32(rd_ptr(inode + OFF_INODE_I_SB) + OFF_SUPER_BLOCK_S_DEV);
    k->_pad = 0;
}

/* Is the directory `dentry` a watched one for these types? (checked at each level of a walk) */
static __always_inline int dir_approved(u64 dentry, u32 mask)
{
    u64 inode = rd_ptr(dentry + OFF_DENTRY_D_INODE);
    if (!inode)
        return 0;
    struct fim_inode_key k = {};
    inode_key(&k, inode);
    struct fim_inode_approver *a = approver_inodes.lookup(&k);
    return a && (a->dir_mask & mask);
}

static __always_inline int file_approved(struct fim_inode_key *k, u32 mask)
{
    struct fim_inode_approver *a = approver_inodes.lookup(k);
    return a && (a->file_mask & mask);
}

/* Discarder check for a file with its parent directory, before the path walk. */
static __always_inline int discarded(struct fim_inode_key *file, u32 generation, struct fim_inode_key *parent,
                                     u32 mnt_id, u32 mask)
{
    u64 rev = current_revision();
    struct fim_discarder *d = discarders.lookup(file);
    if (d && d->revision == rev && d->mnt_id == mnt_id && d->generation == generation &&
        (d->file_mask & mask))
        return 1;
    d = discarders.lookup(parent);
    return d && d->revision == rev && d->mnt_id == mnt_id && (d->dir_mask & mask);
}

#endif
