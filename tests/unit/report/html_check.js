// html_check.js: runs the script of a `kdharvest report --format html` page against a minimal DOM
// and checks the flame graph and chart it draws for the hand-made run A of test_report.c:
// outstanding bytes 300 (LeakDrv stack, 3 frames) + 50 (Good stack, 2 frames) = 350.
// usage: node html_check.js PAGE.html
'use strict';
const fs = require('fs');
const page = fs.readFileSync(process.argv[2], 'utf8');
const m = page.match(/<script>\n([\s\S]*)<\/script>/);
if (!m) throw new Error('no script element');
if (/(src|href)=["']?https?:/.test(page)) throw new Error('page refers to the network');

function Elem(tag) {
  this.tag = tag; this.attrs = {}; this.children = []; this.textContent = ''; this.clientWidth = 1000;
}
Elem.prototype.setAttribute = function (k, v) { this.attrs[k] = String(v); };
Elem.prototype.appendChild = function (c) { this.children.push(c); c.parent = this; return c; };
Elem.prototype.removeChild = function (c) { this.children.splice(this.children.indexOf(c), 1); };
Object.defineProperty(Elem.prototype, 'firstChild', { get() { return this.children[0] || null; } });
const ids = { fg: new Elem('svg'), chart: new Elem('svg'), info: new Elem('span'), reset: new Elem('button'),
              search: new Elem('input') };
global.document = { getElementById: (id) => ids[id], createElementNS: (ns, tag) => new Elem(tag) };
global.window = {};
(0, eval)(m[1]);

function all(e, tag, out = []) { if (e.tag === tag) out.push(e); e.children.forEach((c) => all(c, tag, out)); return out; }
function check(cond, what) { if (!cond) { console.error('FAIL: ' + what); process.exit(1); } }
const titles = () => all(ids.fg, 'rect').map((r) => r.children[0].textContent);

let t = titles();
check(t.length === 6, 'six boxes (all, 2 + 3 frames), got ' + t.length + ': ' + t.join(' | '));
check(t.includes('all  350 (100.00%)'), 'root box: ' + t[0]);
check(t.includes('LeakDrv!DriverEntry+0x10  300 (85.71%)'), 'LeakDrv root frame');
check(t.includes('Good!Work+0x20  50 (14.29%)'), 'Good root frame');
check(t.filter((s) => s.startsWith('nt!ExAllocatePoolWithTag+0x34')).length === 2, 'two allocator leaves');

// Click: zoom into the LeakDrv subtree; the root stays as an ancestor bar.
const leak = all(ids.fg, 'rect').find((r) => r.children[0].textContent.startsWith('LeakDrv!DriverEntry'));
leak.onclick();
t = titles();
check(t.length === 4, 'zoomed: root + 3 frames, got ' + t.length);
check(/zoom: LeakDrv!DriverEntry\+0x10 300 of 350/.test(ids.info.textContent), 'zoom info: ' + ids.info.textContent);
ids.reset.onclick();
check(titles().length === 6, 'reset zoom');

// Search: matching frames are highlighted and their share reported.
ids.search.oninput({ target: { value: 'Good' } });
check(/match 14\.29%/.test(ids.info.textContent), 'search share: ' + ids.info.textContent);
check(all(ids.fg, 'rect').filter((r) => r.attrs.fill === '#e0f').length === 1, 'one highlighted box');

// Chart: one line per tag (Leak, Othr).
const lines = all(ids.chart, 'polyline');
check(lines.length === 2, 'two tag lines, got ' + lines.length);
check(lines[0].children[0].textContent === 'Leak', 'first line is Leak');
console.log('html page ok');
