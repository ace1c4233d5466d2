/** Why a caller was refused before the route ran; api/errors.ts maps each code to its status. */
/** DEVICE_REVOKED: a device token that was good once; told apart so the device stops retrying. */
export type AuthErrorCode = "UNAUTHORIZED" | "FORBIDDEN" | "DEVICE_REVOKED";

export class AuthError extends Error {
  constructor(
    readonly code: AuthErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "AuthError";
  }
}
