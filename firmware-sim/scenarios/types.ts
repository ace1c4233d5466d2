import type { Action } from "../../sdk/index.ts";
import type { Random } from "../random.ts";

export type Channel = "telemetry" | "events" | "feedback";

/** One record a device publishes; the device adds `ts` and picks the QoS by channel. */
export interface Publish {
  channel: Channel;
  record: Record<string, unknown>;
}

/** An action as the platform sends it on devices/{id}/actions: the SDK's type, which is the platform's wire schema. */
export type { Action };

export type Profile = Readonly<Record<string, unknown>>;

/** What one simulated device does; the device (device.ts) handles the wire, timing and answers. */
export interface Behaviour {
  /** The next record this device publishes. */
  next(): Publish;
  /** The device's personalization changed (an action applied or undone, or retained state): behave accordingly. */
  profileChanged?(profile: Profile): void;
  /** An action arrived: e.g. the ATM shows the offered amount in the current card session. */
  actionArrived?(action: Action): void;
  /** What the customer sends after accepting a suggestion, e.g. the rating a rating request asked for. */
  accepted?(action: Action): Publish[];
  /** Whether the customer could undo this change on this device (default: yes). */
  undoable?(action: Action): boolean;
}

export interface SimDeviceSpec {
  id: string;
  kind: string;
  /** The customer a personal device or app belongs to; shared devices (ATMs) have none. */
  subject?: string;
  scenario: string;
}

export interface SimCustomer {
  id: string;
  scenario: string;
  /** Opted in to analytics, personalization and feedback; the others never did (story 8). */
  optedIn: boolean;
  /** The acceptance story whose pattern this customer shows, if any. */
  pattern?: string;
}

/** A fleet laid out: its devices and customers, and the behaviour of each device. */
export interface Planned {
  devices: SimDeviceSpec[];
  customers: SimCustomer[];
  behaviour(device: SimDeviceSpec, random: Random): Behaviour;
}

export interface PlanContext {
  /** Start of every device and customer id, so that fleets do not collide. */
  prefix: string;
  seed: number;
  /** Share of customers who opt in. */
  optIn: number;
  /** Share of devices that turn bad after a few sessions (default TROUBLED_SHARE, 0.1). */
  troubled?: number;
}

export interface Scenario {
  name: string;
  /** One line for help texts. */
  summary: string;
  minDevices: number;
  plan(devices: number, ctx: PlanContext): Planned;
}
