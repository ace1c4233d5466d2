/** The measurement of erasure records: privacy's own, kept apart so scan and erase share it without a cycle. */
export const ERASURES = "erasures";
