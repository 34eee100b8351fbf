// The token format is shared with `spillctl broker init`, which writes api-tokens.json.
export {
  API_TOKEN_ID_PATTERN,
  digestsEqual,
  newApiToken,
  parseApiToken,
  sha256Hex,
  type ApiRole,
} from '@spillway/common';
