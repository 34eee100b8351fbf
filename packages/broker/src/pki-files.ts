// The PKI directory's layout is shared with `spillctl broker init`, which creates it.
export {
  PKI_FILES,
  ensureBrokerPki,
  pkiPaths,
  type BrokerPki,
  type EnsurePkiOptions,
} from '@spillway/common';
