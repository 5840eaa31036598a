/* render_html.c: `--format html`: one self-contained page (no network access) with the summary
 * tables, an interactive flame graph of outstanding bytes (click to zoom, search, hover) and a chart
 * of outstanding bytes over time per tag. The data goes in as JSON (jansson, with "</" escaped so it
 * cannot close the script element); the script and styles are written for this page. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "report_int.h"

#define HTML_STACKS_MAX 20000 /* flame graph input; beyond this the page gets slow to draw */

static void esc(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*s, out);
        }
    }
}

static const char css[] =
    "body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}h1{font-size:18px}h2{font-size:15px;margin-top:24px}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "td.l,th.l{text-align:left}pre{margin:2px 0 8px 16px;font-size:12px}"
    "#fg{width:100%;border:1px solid #ccc}#fg rect{stroke:#fff;stroke-width:0.5;cursor:pointer}"
    "#fg text{font:11px monospace;pointer-events:none}#chart{border:1px solid #ccc}"
    ".warn{color:#a00;font-weight:bold}#ctl{margin:6px 0}#info{font-family:monospace;margin-left:12px}";

/* The flame graph and chart. Data: D.stacks = [[value, root, ..., leaf], ...], D.series =
 * [{tag, t0, w, y:[...]}]. Plain DOM and SVG, no libraries. */
static const char script[] =
    /* A failure anywhere is written into #status (data-error), and data-ok="1" only after everything
     * ran, so a headless browser's DOM dump tells whether the page works. */
    "window.onerror=function(m){var s=document.getElementById('status');if(s){s.setAttribute('data-error',String(m));"
    "s.hidden=false;s.textContent='script error: '+m;}};\n"
    "var NS='http://www.w3.org/2000/svg';\n"
    "function el(n,a,p){var e=document.createElementNS(NS,n);for(var k in a)e.setAttribute(k,a[k]);if(p)p.appendChild(e);return e;}\n"
    "var root={n:'all',v:0,c:{}};\n"
    "D.stacks.forEach(function(s){var n=root;n.v+=s[0];for(var i=1;i<s.length;i++){var c=n.c[s[i]];"
    "if(!c){c=n.c[s[i]]={n:s[i],v:0,c:{},p:n};}c.v+=s[0];n=c;}});\n"
    "var zoom=root,term='';\n"
    "function color(n){if(term&&n.n.indexOf(term)>=0)return '#e0f';var h=0;for(var i=0;i<n.n.length;i++)h=(h*31+n.n.charCodeAt(i))%360;"
    "return 'hsl('+(h%40+10)+',80%,'+(55+h%20)+'%)';}\n"
    "function depth(n){var d=0;for(var k in n.c)d=Math.max(d,depth(n.c[k]));return d+1;}\n"
    "function draw(){var svg=document.getElementById('fg');while(svg.firstChild)svg.removeChild(svg.firstChild);"
    "var W=svg.clientWidth||1000,H=18,anc=[],a=zoom;while(a){anc.unshift(a);a=a.p;}var rows=anc.length-1+depth(zoom);"
    "svg.setAttribute('height',rows*H+4);var matched=0;"
    "function box(n,x,w,d,full){if(w<0.5)return;var y=(rows-1-d)*H;var g=el('g',{},svg);"
    "var r=el('rect',{x:x,y:y,width:Math.max(w-0.5,0.5),height:H-1,fill:color(n)},g);"
    "el('title',{},r).textContent=n.n+'  '+n.v+' ('+(100*n.v/root.v).toFixed(2)+'%)';"
    "r.onclick=function(){zoom=n;draw();};"
    "if(w>40){var t=el('text',{x:x+3,y:y+12},g);var m=Math.floor((w-6)/7);t.textContent=n.n.length>m?n.n.slice(0,m-1)+'..':n.n;}"
    "if(full)return;var cx=x;Object.keys(n.c).sort().forEach(function(k){var c=n.c[k];var cw=w*c.v/n.v;box(c,cx,cw,d+1,false);cx+=cw;});}\n"
    "for(var i=0;i<anc.length-1;i++)box(anc[i],0,W,i,true);box(zoom,0,W,anc.length-1,false);"
    "if(term){(function walk(n){if(n.n.indexOf(term)>=0){matched+=n.v;return;}for(var k in n.c)walk(n.c[k]);})(root);}"
    "document.getElementById('info').textContent=(term?('match '+(100*matched/Math.max(root.v,1)).toFixed(2)+'% | '):'')+"
    "'zoom: '+zoom.n+' '+zoom.v+' of '+root.v;}\n"
    "document.getElementById('reset').onclick=function(){zoom=root;draw();};\n"
    "document.getElementById('search').oninput=function(e){term=e.target.value;draw();};\n"
    "window.onresize=draw;draw();\n"
    "(function(){var svg=document.getElementById('chart'),W=900,H=260,L=70,B=30;"
    "var tmin=1e300,tmax=-1e300,ymax=1;D.series.forEach(function(s){tmin=Math.min(tmin,s.t0);s.y.forEach(function(v,i){"
    "tmax=Math.max(tmax,s.t0+(i+1)*s.w);ymax=Math.max(ymax,v);});});if(tmax<=tmin)tmax=tmin+1;"
    "el('line',{x1:L,y1:H-B,x2:W,y2:H-B,stroke:'#888'},svg);el('line',{x1:L,y1:0,x2:L,y2:H-B,stroke:'#888'},svg);"
    "el('text',{x:2,y:12,'font-size':11},svg).textContent=ymax+' '+D.unit;el('text',{x:2,y:H-B,'font-size':11},svg).textContent='0';"
    "el('text',{x:L,y:H-8,'font-size':11},svg).textContent=new Date(tmin*1000).toISOString();"
    "el('text',{x:W-180,y:H-8,'font-size':11},svg).textContent=new Date(tmax*1000).toISOString();"
    "var pal=['#c00','#06c','#090','#c60','#909','#099'];"
    "function X(t){return (L+(W-L)*(t-tmin)/(tmax-tmin)).toFixed(1);}"
    "D.series.forEach(function(s,k){var p=[];s.y.forEach(function(v,i){var y=(H-B-(H-B-4)*Math.max(v,0)/ymax).toFixed(1);"
    "p.push(X(s.t0+i*s.w)+','+y);p.push(X(s.t0+(i+1)*s.w)+','+y);});p=p.join(' ');"
    "var pl=el('polyline',{points:p,fill:'none',stroke:pal[k%pal.length],'stroke-width':2},svg);"
    "el('title',{},pl).textContent=s.tag;el('text',{x:L+8,y:14+14*k,fill:pal[k%pal.length],'font-size':12},svg).textContent=s.tag+' ('+s.trend+')';});})();\n"
    "(function(){var s=document.getElementById('status');if(s&&!s.getAttribute('data-error'))s.setAttribute('data-ok','1');})();\n";

int rep_render_html(const kdh_report_t *r, FILE *out, kdh_err_t *err)
{
    char a[40], b[40], sid[17];
    /* Every heading names its measure: outstanding bytes, or allocations when sizes are unknown. */
    int bytes = kdh_report_sizes_known(r);
    const char *what = bytes ? "outstanding bytes" : "outstanding allocations";
    fprintf(out, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kdharvest report</title><style>%s</style></head><body>\n", css);
    fprintf(out, "<h1>kdharvest report</h1><p>%u run%s, %" PRIu64 " events read, %" PRIu64 " used", r->nruns,
            r->nruns == 1 ? "" : "s", r->events, r->events_used);
    if (r->skipped)
        fprintf(out, ", <span class=\"warn\">%" PRIu64 " damaged lines skipped</span>", r->skipped);
    if (r->gaps)
        fprintf(out, ", %" PRIu64 " gaps (%.1f s) when hits may have been missed", r->gaps, r->gap_seconds);
    fputs("</p>", out);
    if (!bytes)
        fprintf(out, "<p class=warn id=measure>%" PRIu64 " of %" PRIu64 " allocations have no size: stacks, drivers and "
                     "trends are ranked by outstanding allocations (count), not bytes.</p>",
                r->allocs_used - r->allocs_sized, r->allocs_used);
    else if (r->allocs_sized < r->allocs_used)
        fprintf(out, "<p class=warn id=measure>%" PRIu64 " of %" PRIu64 " allocations have no size and add no bytes.</p>",
                r->allocs_used - r->allocs_sized, r->allocs_used);
    fputs("<ul>", out);
    for (unsigned i = 0; i < r->nruns; i++) {
        fputs("<li>", out);
        esc(out, r->runs[i].dir);
        fprintf(out, " (%" PRIu64 " events)</li>", r->runs[i].events);
    }
    fprintf(out, "</ul>\n<h2>Tags</h2><table><tr><th class=l>tag</th><th>allocs</th><th>frees</th><th>outstanding</th>"
                 "<th>outstanding bytes</th><th>first</th><th>last</th><th class=l>trend of %s</th><th>slope %s/s</th>"
                 "<th class=l>owner</th></tr>\n",
            what, bytes ? "B" : "allocs");
    for (uint32_t i = 0; i < r->ntags; i++) {
        kdh_report_tag_summary_t s;
        rep_tag_summary(r, &r->tags[i], &s);
        rep_time(s.first, a, sizeof a);
        rep_time(s.last, b, sizeof b);
        fputs("<tr><td class=l><code>'", out);
        esc(out, s.tag);
        fprintf(out, "'</code></td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64
                     "</td><td>%s</td><td>%s</td><td class=l%s>%s</td><td>%.3f</td><td class=l>",
                s.allocs, s.frees, s.outstanding, s.outstanding_bytes, a, b,
                strcmp(s.trend, "steady growth") == 0 ? " style=\"color:#a00\"" : "", s.trend, s.slope);
        esc(out, s.owner ? s.owner : "");
        fputs("</td></tr>\n", out);
    }
    fprintf(out, "</table>\n<h2>%s over time</h2><svg id=\"chart\" width=\"900\" height=\"260\"></svg>\n"
                 "<h2>Flame graph of %s</h2><div id=\"ctl\"><button id=\"reset\">reset zoom</button> "
                 "search <input id=\"search\" size=\"30\"><span id=\"info\"></span></div><svg id=\"fg\"></svg>\n",
            bytes ? "Outstanding bytes" : "Outstanding allocations", what);
    kdh_report_value_t v = kdh_report_value_used(r, KDH_REPORT_VALUE_OUTSTANDING);
    uint32_t n = 0, *idx = rep_sorted_stacks(r, v, &n);
    int want_stacks = r->opts.by == KDH_REPORT_BY_ALL || r->opts.by == KDH_REPORT_BY_STACK;
    if (want_stacks)
        fprintf(out, "<h2>Top stacks by %s</h2>\n", what);
    for (uint32_t k = 0, shown = 0; want_stacks && k < n && (!r->opts.top || shown < r->opts.top); k++) {
        const rstack_t *s = &r->stacks[idx[k]];
        if (rep_stack_value(s, v) <= 0)
            break;
        kdh_store_sid_format(s->sid, sid);
        fprintf(out, "<p>%u. <b>", ++shown);
        esc(out, rep_str(r, s->driver));
        fprintf(out, "</b> outstanding %" PRId64 " (%" PRId64 " bytes), allocs %" PRIu64 " (%" PRIu64 " bytes), sid %s</p><pre>",
                s->out_count, s->out_bytes, s->allocs, s->alloc_bytes, sid);
        for (uint32_t f = 0; f < s->nframes; f++) {
            esc(out, rep_str(r, s->frames[f]));
            fputc('\n', out);
        }
        fputs("</pre>\n", out);
    }
    uint32_t nd = 0;
    int want_drivers = r->opts.by == KDH_REPORT_BY_ALL || r->opts.by == KDH_REPORT_BY_DRIVER;
    rdriver_t *d = want_drivers ? rep_drivers(r, v, &nd) : NULL;
    if (want_drivers)
        fprintf(out, "<h2>Drivers by %s</h2><table><tr><th class=l>driver</th><th>stacks</th><th>allocs</th><th>bytes</th>"
                     "<th>outstanding</th><th>outstanding bytes</th></tr>\n", what);
    for (uint32_t i = 0; i < nd && (!r->opts.top || i < r->opts.top); i++) {
        fputs("<tr><td class=l>", out);
        esc(out, rep_str(r, d[i].name));
        fprintf(out, "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRId64 "</td><td>%" PRId64 "</td></tr>\n",
                d[i].stacks, d[i].allocs, d[i].alloc_bytes, d[i].out_count, d[i].out_bytes);
    }
    if (want_drivers)
        fputs("</table>\n", out);
    free(d);
    if (r->npools) {
        fputs("<h2>Pool usage samples</h2><table><tr><th class=l>tag</th><th class=l>pool</th><th>samples</th>"
              "<th>first bytes</th><th>last bytes</th><th>peak</th><th>slope B/s</th><th class=l>trend</th></tr>\n", out);
        for (uint32_t i = 0; i < r->npools; i++) {
            kdh_report_pool_summary_t s;
            rep_pool_summary(r, &r->pools[i], &s);
            fputs("<tr><td class=l><code>'", out);
            esc(out, s.tag);
            fputs("'</code></td><td class=l>", out);
            esc(out, s.pool);
            fprintf(out, "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%.3f</td><td class=l>%s</td></tr>\n",
                    s.samples, s.first_bytes, s.last_bytes, s.peak_bytes, s.slope,
                    s.steady_growth ? "<span class=warn>steady growth</span>" : s.trend);
        }
        fputs("</table>\n", out);
    }
    if (r->nnotes) {
        fputs("<h2>Skipped lines</h2><pre>", out);
        for (unsigned i = 0; i < r->nnotes; i++) {
            esc(out, r->notes[i]);
            fputc('\n', out);
        }
        fputs("</pre>\n", out);
    }

    /* Data for the script. */
    json_t *data = json_object(), *stacks = json_array(), *series = json_array();
    uint32_t used = 0;
    for (uint32_t k = 0; k < n && used < HTML_STACKS_MAX; k++) {
        const rstack_t *s = &r->stacks[idx[k]];
        int64_t val = rep_stack_value(s, v);
        if (val <= 0)
            break;
        json_t *row = json_array();
        json_array_append_new(row, json_integer(val));
        if (s->nframes == 0) {
            kdh_store_sid_format(s->sid, sid);
            json_array_append_new(row, json_string(sid));
        }
        for (uint32_t f = s->nframes; f-- > 0;)
            json_array_append_new(row, json_string(rep_str(r, s->frames[f])));
        json_array_append_new(stacks, row);
        used++;
    }
    free(idx);
    for (uint32_t i = 0; i < r->ntags; i++) {
        const kdh_report_series_t *s = rep_tag_series(r, &r->tags[i]);
        if (!s->started)
            continue;
        json_t *y = json_array();
        for (unsigned j = 0; j < s->used; j++)
            json_array_append_new(y, json_integer(s->y[j]));
        json_array_append_new(series, json_pack("{s:s,s:f,s:f,s:o,s:s}", "tag", r->tags[i].tag, "t0", s->t0, "w",
                                                s->width, "y", y, "trend", kdh_report_series_trend(s)));
    }
    json_object_set_new(data, "stacks", stacks);
    json_object_set_new(data, "series", series);
    json_object_set_new(data, "unit", json_string(bytes ? "B" : "allocs"));
    if (used == HTML_STACKS_MAX)
        fprintf(out, "<p class=warn>The flame graph shows the %d stacks with the most %s.</p>\n", HTML_STACKS_MAX, what);
    fputs("<div id=\"status\" class=\"warn\" hidden></div>\n<script>\nvar D=", out);
    int rc = json_dumpf(data, out, JSON_COMPACT | JSON_ESCAPE_SLASH);
    json_decref(data);
    fprintf(out, ";\n%s</script>\n</body></html>\n", script);
    if (rc != 0 || ferror(out))
        return kdh_err_set(err, KDH_EIO, "cannot write the HTML report");
    return KDH_OK;
}
