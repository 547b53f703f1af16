package hub

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpostdata/outpost/usageexport"
)

// Handler serves the hub's API and web page:
//
//	POST /api/v1/uploads                  an export file (site token)
//	POST /api/v1/batches                  a direct-mode batch (site token)
//	GET  /api/v1/sites                    sites with last seen, status and gaps (read or admin token)
//	GET  /api/v1/sites/{site}/usage?month=YYYY-MM[&format=csv]   (read or admin token)
//	GET  /                                the web page (read or admin token)
//
// A token is sent as "Authorization: Bearer TOKEN", or as the password of
// HTTP basic authentication, which is how a browser sends it to the page.
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+usageexport.PathUploads, h.receive(usageexport.KindMonthlyExport))
	mux.HandleFunc("POST "+usageexport.PathBatches, h.receive(usageexport.KindBatch))
	mux.HandleFunc("GET /api/v1/sites", h.reader(h.serveSites))
	mux.HandleFunc("GET /api/v1/sites/{site}/usage", h.reader(h.serveUsage))
	mux.HandleFunc("GET /{$}", h.reader(h.servePage))
	return mux
}

// bearer returns the token a request presents.
func bearer(r *http.Request) string {
	if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(token)
	}
	if _, password, ok := r.BasicAuth(); ok {
		return password
	}
	return ""
}

// reader lets through requests with a read or admin token. Sites' upload
// tokens do not read: one site must not see another's usage.
func (h *Hub) reader(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := bearer(r)
		if token == "" {
			// Browsers ask for the token on this challenge.
			w.Header().Set("WWW-Authenticate", `Basic realm="outpost hub", charset="UTF-8"`)
			h.writeError(w, http.StatusUnauthorized, "missing token: reading needs a read or admin token (`outpost hub token create --role read`)")
			return
		}
		_, ok, err := h.tokenRole(r.Context(), token)
		if err != nil {
			h.writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="outpost hub", charset="UTF-8"`)
			h.writeError(w, http.StatusUnauthorized, "unknown token: reading needs a read or admin token (`outpost hub token create --role read`); a site's upload token does not read")
			return
		}
		next(w, r)
	}
}

func (h *Hub) receive(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := bearer(r)
		if token == "" {
			h.writeError(w, http.StatusUnauthorized, "missing bearer token: register the site with `outpost hub site add` and send its token")
			return
		}
		site, ok, err := h.siteByToken(r.Context(), token)
		if err != nil {
			h.writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if !ok {
			h.writeError(w, http.StatusUnauthorized, "unknown token")
			return
		}
		if site.Disabled != nil {
			h.writeError(w, http.StatusForbidden, "site "+site.Name+" is disabled at the hub (since "+site.Disabled.UTC().Format(time.RFC3339)+"): ask the hub's operator")
			return
		}
		release, ok := h.inflight.acquire(site.Name, h.perSite())
		if !ok {
			w.Header().Set("Retry-After", "10")
			h.writeError(w, http.StatusTooManyRequests, "site "+site.Name+" already has "+strconv.Itoa(h.perSite())+" uploads in progress; retry later")
			return
		}
		defer release()
		data, err := h.readBody(w, r)
		var tooLarge *bodyTooLargeError
		switch {
		case errors.As(err, &tooLarge):
			h.log().Warn("usage refused", "site", site.Name, "reason", err)
			h.writeError(w, http.StatusRequestEntityTooLarge, err.Error())
			return
		case err != nil:
			h.writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
			return
		}
		rc, err := h.Ingest(r.Context(), site, data, kind)
		var bad *BadFileError
		switch {
		case errors.As(err, &bad):
			h.log().Warn("usage refused", "site", site.Name, "reason", bad.Error())
			h.writeError(w, http.StatusBadRequest, bad.Error())
			return
		case err != nil:
			h.log().Error("usage not stored", "site", site.Name, "err", err)
			h.writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if key := r.Header.Get("Idempotency-Key"); key != "" && key != rc.PayloadSHA256 {
			// Stored anyway (the content is what counts), but the client
			// should know its key is not the payload hash.
			w.Header().Set("Warning", `199 - "Idempotency-Key is not the payload sha256"`)
		}
		writeJSON(w, http.StatusOK, rc)
	}
}

func (h *Hub) serveSites(w http.ResponseWriter, r *http.Request) {
	sites, err := h.Sites(r.Context())
	if err != nil {
		h.writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, sites)
}

func (h *Hub) serveUsage(w http.ResponseWriter, r *http.Request) {
	month := r.URL.Query().Get("month")
	if month == "" {
		month = h.now().UTC().Format("2006-01")
	}
	if _, _, err := usageexport.ParseMonth(month); err != nil {
		h.writeError(w, http.StatusBadRequest, "month: "+err.Error())
		return
	}
	u, err := h.Usage(r.Context(), r.PathValue("site"), month)
	if err != nil {
		h.writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if r.URL.Query().Get("format") != "csv" {
		writeJSON(w, http.StatusOK, u)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+u.Site+"-"+u.Month+`.csv"`)
	cw := csv.NewWriter(w)
	writeRow := func(cells ...string) {
		for i := range cells {
			cells[i] = csvCell(cells[i])
		}
		cw.Write(cells)
	}
	writeRow("site", "month", "uid", "kind", "namespace", "name", "deleted_at", "records", "milli_vcore_seconds", "vcore_hours")
	for _, row := range u.Instances {
		deleted := ""
		if row.DeletedAt != nil {
			deleted = row.DeletedAt.UTC().Format(time.RFC3339)
		}
		writeRow(u.Site, u.Month, row.UID, row.Kind, row.Namespace, row.Name, deleted,
			strconv.FormatInt(row.Records, 10), strconv.FormatInt(row.MilliVCoreSeconds, 10), row.VCoreHours)
	}
	cw.Flush()
}

// csvCell defuses a cell a spreadsheet would run as a formula (OWASP's CSV
// injection advice): one that starts with = + - @, a tab or a carriage
// return gets a leading single quote. Sites choose instance names, so a
// name like =HYPERLINK(...) must reach the operator's spreadsheet as text.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// writeError answers with the reason and the hub's clock, which a site
// whose records were refused as future ones can trust.
func (h *Hub) writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg, "serverTime": h.now().UTC().Format(time.RFC3339)})
}
