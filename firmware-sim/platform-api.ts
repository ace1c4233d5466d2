/** Why a call to the platform's HTTP API failed, in words that name what to change. */
export class ApiError extends Error {
  constructor(
    readonly code: "unreachable" | "unauthorized" | "not_found" | "conflict" | "rejected" | "unavailable",
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface RegisteredDevice {
  id: string;
  kind: string | null;
  subject: string | null;
  revoked: boolean;
}

export type ConsentPurposes = { analytics: boolean; personalization: boolean; feedback: boolean };

/** The calls the simulator makes with an admin token: the registry and consent. */
export class PlatformApi {
  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  listDevices(): Promise<RegisteredDevice[]> {
    return this.call<RegisteredDevice[]>("GET", "/api/devices");
  }

  provision(device: { id: string; kind: string; subject?: string }): Promise<{ id: string; token: string }> {
    return this.call("POST", "/api/devices", device);
  }

  setConsent(subject: string, purposes: ConsentPurposes): Promise<unknown> {
    return this.call("PUT", `/api/subjects/${encodeURIComponent(subject)}/consent`, purposes);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(new URL(path, this.url), {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(60_000),
      });
    } catch (err) {
      const e = err as Error & { cause?: Error };
      throw new ApiError(
        "unreachable",
        `cannot reach the platform at ${this.url} (--url): ${e.cause?.message ?? e.message}`,
      );
    }
    const text = await res.text();
    let answer: Record<string, unknown> = {};
    try {
      answer = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      // not JSON: the status says enough
    }
    if (res.ok) return answer as T;
    const reason = answer.message ?? answer.error ?? text.slice(0, 200);
    const said = `${method} ${path}: ${res.status} ${typeof reason === "string" ? reason : JSON.stringify(reason)}`;
    if (res.status === 401 || res.status === 403)
      throw new ApiError("unauthorized", `the platform refused the token (--token): ${said}`, res.status);
    if (res.status === 404) throw new ApiError("not_found", said, res.status);
    if (res.status === 409) throw new ApiError("conflict", said, res.status);
    if (res.status >= 500) throw new ApiError("unavailable", said, res.status);
    throw new ApiError("rejected", said, res.status);
  }
}
