import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import axe from 'axe-core';
import { Browser, chromium, Page } from 'playwright-core';

/**
 * The browser tests' Chromium, axe-core check and screenshots (the console's and the privacy
 * center's suites): Debian's chromium driven by playwright-core, no browser download.
 */

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTEFACTS = path.resolve(__dirname, '../../test-artefacts');

/** Headless Chromium; playwright-core starts it with a fresh temporary profile (--user-data-dir) of its own. */
export function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: the browser tests cannot run (apt-get install -y chromium, or set CHROMIUM_PATH). .ci/run installs it.`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** axe-core's serious and critical violations on the page (injected through the DevTools protocol: the pages' CSP forbids inline scripts). */
export async function seriousViolations(page: Page): Promise<string[]> {
  await page.evaluate(axe.source);
  const violations = (await page.evaluate(
    'axe.run(document, { resultTypes: ["violations"] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length })))',
  )) as Array<{ id: string; impact: string; help: string; nodes: number }>;
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes} elements)`);
}

/**
 * A suite's screenshots: `shot(page, name)` writes test-artefacts/{area}/{database}/{name}.png
 * (git-ignored; the folder is made on the first one), the whole page.
 */
export function screenshots(area: 'console' | 'privacy-center', database: string): { dir: string; shot(page: Page, name: string): Promise<Buffer> } {
  const dir = path.join(ARTEFACTS, area, database);
  return {
    dir,
    shot: (page, name) => {
      mkdirSync(dir, { recursive: true });
      return page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
    },
  };
}
