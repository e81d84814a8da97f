// A few response types used the way a frontend would: `tsc --noEmit` over this file and the
// generated api.d.ts runs in the test suite (tests/api/test_api_typescript.py), so renaming,
// dropping or retyping one of these fields fails the build.
import type { components, paths } from "./api";

type Schemas = components["schemas"];
type Json<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: { 200: { content: { "application/json": infer B } } };
}
  ? B
  : never;

export type MarketList = Json<"/v1/markets", "get">;
export type RecentTrades = Json<"/v1/trades", "get">;
export type MyPositions = Json<"/v1/positions", "get">;
export type MyNotifications = Json<"/v1/notifications", "get">;

export function endingSoon(list: MarketList, before: Date): number[] {
  return list.data.filter((m) => new Date(m.endDate) < before && m.status === "active").map((m) => m.id);
}

export function pageLabel(list: MarketList): string {
  return `${list.meta.page}/${list.meta.totalPages} (${list.meta.total})` + (list.meta.hasNext ? " →" : "");
}

export function tradeLine(t: Schemas["Trade"]): string {
  return `${t.side} ${t.shares} ${t.outcome.toUpperCase()} @ ${t.price ?? "-"} (${t.txHash})`;
}

export function nextCursor(page: RecentTrades): string | null {
  return page.meta.hasNext ? page.meta.nextCursor : null;
}

export function totalPnl(p: MyPositions): bigint {
  // amounts are decimal strings with 6 decimals: exact as integers of micro-USDC
  return p.data.reduce((sum, x) => sum + BigInt(x.totalPnl.replace(".", "")), 0n);
}

export function unread(n: MyNotifications): string[] {
  return n.data.filter((x) => !x.read).map((x) => x.id);
}

export function freshness(a: Schemas["AsOf"]): number | null {
  return a.blockNumber;
}

export function errorText(e: Schemas["Error"]): string {
  return `${e.statusCode} ${e.message}: ` + e.errors.map((x) => `${x.field} ${x.message}`).join("; ");
}
