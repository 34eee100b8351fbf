// `npm run docs:screenshots`: the pictures in docs/dashboard.md, from a real broker and
// Debian's Chromium at a laptop's and a phone's size.
import { fileURLToPath } from 'node:url';
import { launchChromium, signIn } from './browser.js';
import { VIEWER_TOKEN } from './fleet.js';
import { addOffloads, startScenario } from './scenario.js';

const OUT = fileURLToPath(new URL('../../../docs/images/', import.meta.url));

const fleet = await startScenario();
const browser = await launchChromium();
try {
  await addOffloads(fleet);
  for (const [name, viewport, fullPage] of [
    ['dashboard-laptop', { width: 1366, height: 768 }, true],
    ['dashboard-phone', { width: 390, height: 844 }, false],
  ] as const) {
    const page = await browser.newPage({ viewport, colorScheme: 'light' });
    await signIn(page, fleet.url, VIEWER_TOKEN);
    await page.locator('[data-donor="gpu-east"]').waitFor();
    await page.locator('[data-pod="ml-team/train-llama-0"]').getByText('Running').first().waitFor();
    await page.getByLabel('GPUs', { exact: true }).fill('16');
    await page.getByRole('button', { name: 'Explain' }).click();
    await page.locator('[data-result]').waitFor();
    if (fullPage) await page.locator('details.nodes summary').first().click();
    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: `${OUT}${name}.png`, fullPage });
    if (!fullPage) {
      await page.evaluate('document.getElementById("offloads-title").scrollIntoView()');
      await page.screenshot({ path: `${OUT}${name}-offloads.png` });
    }
    await page.close();
    process.stdout.write(`wrote docs/images/${name}.png\n`);
  }
} finally {
  await browser.close();
  await fleet.stop();
}
