package hub

import (
	"html/template"
	"net/http"
)

// page is the hub's web page. Styles are inline and nothing is fetched from
// elsewhere, so it works on an air-gapped network.
var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Outpost hub</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2433}
h1{font-size:1.4rem}table{border-collapse:collapse;min-width:40rem}
th,td{text-align:left;padding:.4rem .8rem;border-bottom:1px solid #d8dde6}
th{background:#f1f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37}.warning{color:#9a6700}.overdue,.never,.gap{color:#cf222e;font-weight:600}.disabled{color:#57606a}
</style></head><body>
<h1>Outpost hub — usage in {{.Month}}</h1>
<p>Last seen is the newest hour a site's delivered usage covers, not when a file arrived.</p>
<table><thead><tr><th>Site</th><th>Last seen</th><th>Status</th><th>Missing months</th><th class="num">vCore-hours this month</th><th>Download</th></tr></thead><tbody>
{{range .Sites}}<tr><td>{{.Name}}</td><td>{{if .LastSeen}}{{.LastSeen.UTC.Format "2006-01-02 15:04 MST"}}{{else}}—{{end}}</td>
<td class="{{.Status}}">{{.Status}}</td>
<td>{{range $i, $g := .Gaps}}{{if $i}}, {{end}}<span class="gap" title="{{$g.Reason}}">gap {{$g.Month}}</span>{{else}}none{{end}}</td>
<td class="num">{{.MonthVCoreHours}}</td>
<td><a href="/api/v1/sites/{{.Name}}/usage?month={{$.Month}}&amp;format=csv">CSV</a> · <a href="/api/v1/sites/{{.Name}}/usage?month={{$.Month}}">JSON</a></td></tr>
{{else}}<tr><td colspan="6">No sites yet: register one with <code>outpost hub site add</code>.</td></tr>{{end}}
</tbody></table></body></html>
`))

func (h *Hub) servePage(w http.ResponseWriter, r *http.Request) {
	sites, err := h.Sites(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	page.Execute(w, map[string]any{"Month": h.now().UTC().Format("2006-01"), "Sites": sites})
}
