/**
 * What actions/ needs of other parts, written here as the small interfaces it
 * uses, so it depends on no other part's internals: the platform passes the
 * real parts, which fit these shapes structurally.
 */

/** How actions and state leave the platform; the broker implements it. */
export interface Publisher {
  publish(topic: string, payload: string, options: { qos: 0 | 1; retain: boolean }): Promise<void>;
}

/** The devices the platform knows (the registry): whether a device may still be reached. */
export interface DeviceDirectory {
  get(id: string): { readonly id: string; readonly revoked: boolean } | undefined;
  list(): ReadonlyArray<{ readonly id: string; readonly revoked: boolean }>;
  /** Called after each change is in effect; returns a function that stops listening. */
  /** `here`: made on this node, which acts on it once for the cluster. */
  onChange(
    listener: (change: { op: "provisioned" | "rotated" | "revoked"; device: string; here: boolean }) => void,
  ): () => void;
}

/** Whom each device serves now (link or session), and every device of a subject (subjects/). */
export interface TouchpointDirectory {
  subjectOf(device: string): string | undefined;
  linkedSubject(device: string): string | undefined;
  devicesOf(subject: string): string[];
  onChange(
    listener: (change: {
      device: string;
      before: string | undefined;
      after: string | undefined;
      here: boolean;
    }) => void,
  ): () => void;
}

/** A device's answer on devices/{id}/acks, as ingest parsed it. */
export interface Ack {
  device: string;
  action: string;
  status: "applied" | "accepted" | "declined" | "failed" | "undone";
  reason?: string | undefined;
}

/** An action a rule proposes (rules/). */
export interface Proposal {
  /** An id derived from what triggered it; a second proposal with an id the action log holds is refused. */
  id?: string;
  rule: string;
  kind: "set" | "suggest" | "clear" | "notify";
  /** Profile key; for notify, the webhook URL. */
  key: string;
  value: unknown;
  prompt: string | undefined;
  why: string;
  scope: "device" | "subject";
  device: string;
  subject: string | undefined;
}
