/**
 * The rule catalogue's measurement and what other parts need of it: a reader
 * imports from here, never the measurement name.
 */
export const RULE_VERSIONS = "rule_versions";

/** Rule texts are configuration written by staff: erasure reports a mention in them and changes nothing. */
export const erasure = { policies: { [RULE_VERSIONS]: "keep" } } as const;
