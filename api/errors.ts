import type { z } from "zod";

/** One readable sentence per problem, naming the field. */
export function zodMessage(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const field = i.path.join(".");
      if (i.code === "unrecognized_keys") return `unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.join(", ")}`;
      return field ? `${field}: ${i.message}` : i.message;
    })
    .join("; ");
}
