import { afterEach, beforeEach, describe } from 'vitest';
import { durabilityContract } from './contract-durability.js';
import { inventoryContract } from './contract-inventory.js';
import { ledgerContract } from './contract-ledger.js';
import { lifecycleContract } from './contract-lifecycle.js';
import { recordsContract } from './contract-records.js';
import { reserveContract } from './contract-reserve.js';
import type { ContractContext, StoreHarness } from './fixtures.js';

export {
  CONTENDED_DONOR,
  CONTENDED_FREE,
  T0,
  cluster,
  contendedRequests,
  expectNoOvercommit,
  seedContendedDonor,
  type StoreHarness,
} from './fixtures.js';

/**
 * The one behaviour both stores must show, written against the Store interface only.
 * sqlite.int.test.ts and redis.int.test.ts run it on real backends; its parts live in
 * contract-*.ts.
 */
export function describeStoreContract(name: string, makeStore: () => Promise<StoreHarness>): void {
  describe(`Store contract: ${name}`, () => {
    let h: StoreHarness | undefined;
    const ctx: ContractContext = {
      get h() {
        if (!h) throw new Error('no store harness outside a test');
        return h;
      },
      get store() {
        return this.h.store;
      },
    };

    beforeEach(async () => {
      h = await makeStore();
    });
    afterEach(async () => {
      await h?.cleanup();
      h = undefined;
    });

    recordsContract(ctx);
    inventoryContract(ctx);
    reserveContract(ctx);
    lifecycleContract(ctx);
    durabilityContract(ctx);
    ledgerContract(ctx);
  });
}
