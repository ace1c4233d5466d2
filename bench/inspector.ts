import WebSocket from "ws";

/**
 * Asks a Node process started with `--inspect=127.0.0.1:0` for a full
 * garbage collection (Chrome DevTools protocol, HeapProfiler.collectGarbage),
 * so that a memory reading counts what the process holds, not garbage it
 * has not collected yet.
 */
export async function collectGarbage(inspectorUrl: string): Promise<void> {
  const socket = new WebSocket(inspectorUrl);
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  try {
    for (let i = 0; i < 2; i += 1) {
      await new Promise<void>((resolve, reject) => {
        const id = i + 1;
        // With the default binaryType, ws hands each message over as one Buffer.
        const onMessage = (data: Buffer) => {
          const answer = JSON.parse(data.toString("utf8")) as { id?: number; error?: { message: string } };
          if (answer.id !== id) return;
          socket.off("message", onMessage);
          if (answer.error) reject(new Error(`inspector: ${answer.error.message}`));
          else resolve();
        };
        socket.on("message", onMessage);
        socket.send(JSON.stringify({ id, method: "HeapProfiler.collectGarbage" }));
      });
    }
  } finally {
    socket.close();
  }
}
