// A weir log plugin in JavaScript: counts lines, and lines that contain a
// word. Built with componentize-js against wit/v0.1.0, world log-plugin:
//
//   componentize-js plugin.js --wit wit/v0.1.0 -n log-plugin -d http fetch-event -o words_js.wasm
//
// Settings (JSON from the pipeline's `config`):
//   word    the word to look for (required)
//   prefix  metric name prefix (default "words")
//
// Families: PREFIX_lines_total (every line but empty ones, which are
// rejected) and PREFIX_matches_total{word} (lines containing the word).
import { log as hostLog } from 'weir:plugin/host@0.1.0';

// The plugin's state: the host makes one instance per sandbox.
let word = null;

const LINES = 0;
const MATCHES = 1;

function counter(name, help, labels) {
  return { name, kind: 'counter', help, unit: '', labels, buckets: [] };
}

export const log = {
  // A thrown string is the `err` of `result<_, string>`: the user sees it.
  init(config) {
    let settings;
    try {
      settings = JSON.parse(config || '{}');
    } catch (e) {
      throw `config is not JSON: ${e}`;
    }
    if (typeof settings.word !== 'string' || settings.word === '') {
      throw 'config: `word` is required: the word to count lines by';
    }
    word = settings.word;
    const prefix = settings.prefix ?? 'words';
    hostLog('info', `javascript plugin counting lines with "${word}"`);
    return [
      counter(`${prefix}_lines_total`, 'Lines seen, empty ones aside.', []),
      counter(`${prefix}_matches_total`, 'Lines that contain the word.', ['word']),
    ];
  },

  onLines(batch) {
    let lines = 0;
    let matches = 0;
    let rejected = 0;
    for (const line of batch.lines) {
      if (line.trim() === '') {
        rejected += 1;
        continue;
      }
      lines += 1;
      if (line.includes(word)) {
        matches += 1;
      }
    }
    const updates = [];
    if (lines > 0) {
      updates.push({ family: LINES, labels: [], change: { tag: 'add', val: lines } });
    }
    if (matches > 0) {
      updates.push({ family: MATCHES, labels: [word], change: { tag: 'add', val: matches } });
    }
    return { updates, rejected, declare: [] };
  },
};
