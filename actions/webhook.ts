/** Why a webhook delivery ended as it did, for the action log. */
export type WebhookResult = { ok: true; status: number } | { ok: false; reason: string };

/**
 * Posts a notification to a support tool's webhook: JSON, a few attempts
 * with backoff for network errors and 5xx, none for a 4xx (the hook said no).
 */
export async function postWebhook(
  url: string,
  body: unknown,
  options: { attempts?: number; timeoutMs?: number } = {},
): Promise<WebhookResult> {
  const attempts = options.attempts ?? 3;
  let last = "";
  for (let attempt = 0; attempt < attempts; attempt += 1) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "refeed-notify/1" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
      });
      if (res.ok) return { ok: true, status: res.status };
      last = `webhook answered ${res.status}`;
      if (res.status < 500) break;
    } catch (err) {
      last = `webhook unreachable: ${(err as Error).message}`;
    }
  }
  return { ok: false, reason: last };
}
