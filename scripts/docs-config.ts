// Regenerate docs/configuration.md from the settings declaration (src/core/settings.ts).
import { writeFileSync } from 'node:fs';
import { configurationMarkdown } from '../src/cli/configDoc.js';

writeFileSync(new URL('../docs/configuration.md', import.meta.url), configurationMarkdown());
process.stdout.write('wrote docs/configuration.md\n');
