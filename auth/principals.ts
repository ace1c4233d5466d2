/** admin: everything; product: rules; support: read-only views. */
export type StaffRole = "admin" | "product" | "support";

/**
 * Who is calling. Staff act on the platform; a subject (a customer, through an
 * app) acts only on their own data; a device only on its own. `name` is for
 * audit trails such as rule versions and undo; it never holds a secret.
 */
export type Principal =
  | { role: StaffRole; name: string }
  | { role: "subject"; subject: string; name: string }
  | { role: "device"; device: string; name: string };
export type Role = Principal["role"];

/** A subject principal may act only on its own subject; staff roles that passed the role check may act on any. */
export function ownsSubject(principal: Principal | undefined, subject: string): boolean {
  if (!principal) return false;
  if (principal.role === "subject") return principal.subject === subject;
  return principal.role !== "device";
}
