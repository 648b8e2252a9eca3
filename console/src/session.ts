/**
 * What the console's pages share: where the gateway is, relative to the page (so a proxy that
 * serves the gateway under a path prefix keeps working), and the tab's API key.
 */

/** sessionStorage key of the API key: typed once per tab, on either page, gone with the tab. */
export const API_KEY_KEY = 'realtime-gateway-console:api-key';

export const consoleBase = new URL('./', location.href);
export const gatewayBase = new URL('../', consoleBase);

export function gatewayUrl(path: string): string {
  return new URL(path, gatewayBase).href;
}
