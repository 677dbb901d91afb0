"""An audit as one self-contained HTML page a security team opens in a browser: the counts,
then per repository and tag every finding with the layer and instruction that made it, its
status, confidence and when it was first seen; sortable and filterable. No network asset:
the styles and the script are inline, and the page has a Content-Security-Policy that
forbids fetching anything. Every string is escaped (they come from images)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from leakscan import __version__, provenance
from leakscan import model as m

if TYPE_CHECKING:
    from leakscan.audit.result import AuditReport

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}
.counts{display:flex;flex-wrap:wrap;gap:.6em;margin:1em 0}
.count{border:1px solid #ccc;border-radius:6px;padding:.4em .8em;min-width:7em}
.count b{display:block;font-size:1.4em}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{cursor:pointer;background:#f4f4f4;user-select:none}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
td.instr,td.secret{font-family:monospace;word-break:break-all}
.present{color:#b00;font-weight:bold}.deleted,.overwritten{color:#a60}
.filters{margin:.6em 0}.filters input{width:20em}
.problems li{color:#900}
"""

_JS = """
(function(){
  var table=document.getElementById('findings');
  var body=table.tBodies[0];
  var rows=Array.prototype.slice.call(body.rows);
  var text=document.getElementById('filter-text');
  var status=document.getElementById('filter-status');
  var conf=document.getElementById('filter-confidence');
  var shown=document.getElementById('shown');
  function apply(){
    var q=text.value.toLowerCase(),s=status.value,c=conf.value,n=0;
    rows.forEach(function(r){
      var ok=(!q||r.textContent.toLowerCase().indexOf(q)>=0)
        &&(!s||r.getAttribute('data-status')===s)
        &&(!c||r.getAttribute('data-confidence')===c);
      r.hidden=!ok;if(ok){n++;}
    });
    shown.textContent=String(n);
  }
  [text,status,conf].forEach(function(e){e.addEventListener('input',apply);
    e.addEventListener('change',apply);});
  var heads=table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads,function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      Array.prototype.forEach.call(heads,function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var num=th.getAttribute('data-type')==='number';
      rows.sort(function(a,b){
        var x=a.cells[i].getAttribute('data-sort')||a.cells[i].textContent;
        var y=b.cells[i].getAttribute('data-sort')||b.cells[i].textContent;
        var d=num?(parseFloat(x)||0)-(parseFloat(y)||0):x.localeCompare(y);
        return asc?d:-d;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  // a link may carry a filter and a sort: #filter=TEXT&status=S&sort=COLUMN
  var args={};
  location.hash.replace(/^#/,'').split('&').forEach(function(kv){
    var i=kv.indexOf('=');if(i>0){args[kv.slice(0,i)]=decodeURIComponent(kv.slice(i+1));}
  });
  if(args.filter){text.value=args.filter;}
  if(args.status){status.value=args.status;}
  if(args.sort){Array.prototype.forEach.call(heads,function(th){
    if(th.textContent===args.sort){th.click();}});}
  apply();
  document.body.setAttribute('data-ready','1');
})();
"""

_COLUMNS = (
    ("repository", "text"),
    ("tag", "text"),
    ("platform", "text"),
    ("layer", "number"),
    ("instruction", "text"),
    ("where", "text"),
    ("status", "text"),
    ("rule", "text"),
    ("secret", "text"),
    ("confidence", "text"),
    ("first seen", "text"),
)


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _instruction(image: m.ImageReport, f: m.Finding) -> tuple[int | None, str, str, str]:
    """The layer, the instruction that made the finding's place, where, and the status."""
    loc = f.location
    if isinstance(loc, m.FileLocation):
        layer = image.layers[loc.layer_index] if loc.layer_index < len(image.layers) else None
        return loc.layer_index, (layer.created_by if layer else "") or "", loc.path, loc.status
    if isinstance(loc, m.HistoryLocation):
        return loc.layer_index, loc.created_by or "", f"history {loc.history_index}", "history"
    if isinstance(loc, m.AttestationLocation):
        return None, "", provenance.where(loc), "attestation"
    return None, "", f"config {loc.field}" + (f" {loc.key}" if loc.key else ""), "config"


def render_html(report: AuditReport) -> str:
    """The page."""
    from leakscan.audit.report import iso

    s = report.stats
    findings = report.findings
    leaking = sum(1 for i in report.images if i.report.findings)
    problems = [p.message for p in report.errors]
    for entry in report.images:
        name = f"{entry.repository}:{entry.tag}" if entry.tag else entry.repository
        problems += [f"{name}: {p.message}" for p in entry.report.errors]
    counts = [
        ("repositories", s.repositories),
        ("images", s.images),
        ("images-leaking", leaking),
        ("findings", len(findings)),
        ("layers-total", s.layers_total),
        ("layers-unique", s.layers_unique),
        ("layers-scanned", s.layers_scanned),
        ("layers-cached", s.layers_cached),
        ("problems", len(problems)),
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # nothing may be fetched: the page is read offline, and from untrusted image strings
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        f"<title>leakscan audit of {_e(report.registry)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>leakscan audit of {_e(report.registry)}</h1>",
        f'<p id="meta">started {_e(iso(report.started))}, {s.seconds:.1f} s, '
        f"leakscan {_e(__version__)}"
        + (" &mdash; new findings only" if report.new_only else "")
        + (f" &mdash; first seen since {_e(iso(report.since))}" if report.since else "")
        + "</p>",
        '<div class="counts">',
    ]
    for key, value in counts:
        label = key.replace("-", " ")
        out.append(
            f'<div class="count"><b id="count-{key}" data-count="{value}">{value}</b>{label}</div>'
        )
    out.append("</div>")
    out.append(
        '<div class="filters"><label>Filter <input id="filter-text" type="search" '
        'placeholder="repository, tag, path, rule..."></label> '
        '<select id="filter-status"><option value="">any status</option>'
        + "".join(
            f'<option value="{x}">{x}</option>'
            for x in ("present", "deleted", "overwritten", "history", "config", "attestation")
        )
        + '</select> <select id="filter-confidence"><option value="">any confidence</option>'
        + "".join(f'<option value="{x}">{x}</option>' for x in ("high", "medium", "low"))
        + '</select> <span id="shown">'
        + str(len(findings))
        + "</span> shown</div>"
    )
    out.append('<table id="findings"><thead><tr>')
    out += [f'<th data-type="{kind}">{_e(name)}</th>' for name, kind in _COLUMNS]
    out.append("</tr></thead><tbody>")
    for entry in report.images:
        image = entry.report
        firsts = dict(entry.first_seen)
        for f in image.findings:
            layer, instruction, where, status = _instruction(image, f)
            first = firsts.get(f.fingerprint)
            cells = [
                _e(entry.repository),
                _e(entry.tag or ""),
                _e(image.platform or ""),
                "" if layer is None else str(layer),
                _e(instruction),
                _e(where),
                f'<span class="{status}">{_e(status)}</span>',
                _e(f.rule_id),
                _e(f.redacted),
                _e(f.confidence),
                _e(iso(first) if first is not None else ""),
            ]
            sort_layer = "" if layer is None else f' data-sort="{layer}"'
            out.append(
                f'<tr data-status="{_e(status)}" data-confidence="{_e(f.confidence)}" '
                f'data-fingerprint="{_e(f.fingerprint)}">'
                + "".join(
                    f'<td class="{name.split()[0]}"{sort_layer if name == "layer" else ""}>{c}</td>'
                    for (name, _), c in zip(_COLUMNS, cells, strict=True)
                )
                + "</tr>"
            )
    out.append("</tbody></table>")
    if problems:
        out.append('<h2>Could not be audited</h2><ul class="problems" id="problems">')
        out += [f"<li>{_e(p)}</li>" for p in problems]
        out.append("</ul>")
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"
