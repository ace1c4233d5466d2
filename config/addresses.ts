import { isIP } from "node:net";

/** An IP address, or a subnet such as 10.0.0.0/8 (for the settings' check). */
export function isAddressOrSubnet(entry: string): boolean {
  const [address, bits, extra] = entry.split("/");
  const family = isIP(address ?? "");
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n <= (family === 6 ? 128 : 32);
}
