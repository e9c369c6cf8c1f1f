import path from 'node:path';
import { Eta } from 'eta';
import { fill, formatTime, Language, LANGUAGES, STRINGS } from './i18n';
import type { TenantPage } from './tenant-page';

/** How the language switch of a page works: links for GET pages, a form that re-posts the link's token otherwise. */
export type LanguageSwitch = { kind: 'links' } | { kind: 'form'; action: string; token: string; csrf: string };

export interface PageFrame {
  lang: Language;
  title: string;
  /** Undefined on pages outside any tenant (unknown tenant, bad address). */
  tenant?: TenantPage;
  languageSwitch?: LanguageSwitch;
}

/**
 * The templates (src/privacy-center/views/*.eta, copied beside the compiled code by `npm run
 * build`). Eta escapes every `<%= %>`; `<%~ %>` (raw) is used only for the layout's body.
 */
export class Views {
  private readonly eta = new Eta({ views: path.join(__dirname, 'views'), autoEscape: true, cache: true });

  page(template: string, frame: PageFrame, data: Record<string, unknown>): string {
    const offered = frame.tenant ? frame.tenant.languages.filter((l) => (LANGUAGES as readonly string[]).includes(l)) : [];
    return this.eta.render(`./${template}`, {
      ...data,
      ...frame,
      s: STRINGS[frame.lang],
      fill,
      time: (d: Date | undefined) => formatTime(frame.lang, d),
      languages: offered.length > 1 ? offered.map((l) => ({ code: l, name: STRINGS[l as Language].languageName })) : [],
    });
  }
}
