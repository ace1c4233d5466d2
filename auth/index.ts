export type { StaffRole, Principal, Role } from "./principals.ts";
export { ownsSubject } from "./principals.ts";
export { type Authenticator, anyAuthenticator, adminAuthenticator } from "./authenticator.ts";
export { bearer, requireRole } from "./require-role.ts";
export { AuthError, type AuthErrorCode } from "./errors.ts";
export { deviceOf, type DeviceCheck } from "./device-bearer.ts";
