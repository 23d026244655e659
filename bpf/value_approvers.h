/* Approvers on values, not paths: a rule such as "a chmod that sets the setuid bit" or "a setxattr
 * of security.capability" matches anywhere, so a path approver cannot express it; without these the
 * event type would fall back to accept-all. They are checked before the path walk (an approved
 * event skips the inode discarders too) and, like every approver, may only over-approve. */
#ifndef OTEL_FIM_VALUE_APPROVERS_H
#define OTEL_FIM_VALUE_APPROVERS_H

BPF_ARRAY(value_approvers, struct fim_value_approver, FIM_TYPE_MAX);
/* xattr names (the first FIM_BASENAME_KEY - 1 bytes, NUL padded) -> event-type mask */
BPF_HASH(approver_xattrs, struct fim_basename_key, u32, 256);

/* Does a value of this call (its mode, its xattr name) approve it? `mask` is the type's bit. */
static __always_inline int value_approved(u32 type, u32 mask, u32 mode, u64 xattr)
{
    struct fim_value_approver *va = value_approvers.lookup(&type);
    if (!va)
        return 0;
    if (mode & va->mode_any)
        return 1;
    if (!va->xattr_names || !xattr)
        return 0;
    struct fim_basename_key key = {};
    bpf_probe_read_user_str(key.name, sizeof(key.name), (void *)xattr);
    u32 *types = approver_xattrs.lookup(&key);
    return types && (*types & mask);
}

#endif
