package hub

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpostdata/outpost/usageexport"
)

// maxBody bounds an upload; a year of a large site fits.
const maxBody = 4 << 30

// Handler serves the hub's API and web page:
//
//	POST /api/v1/uploads                  an export file (token required)
//	POST /api/v1/batches                  a direct-mode batch (token required)
//	GET  /api/v1/sites                    sites with last seen and status
//	GET  /api/v1/sites/{site}/usage?month=YYYY-MM[&format=csv]
//	GET  /                                the web page
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+usageexport.PathUploads, h.receive(usageexport.KindMonthlyExport))
	mux.HandleFunc("POST "+usageexport.PathBatches, h.receive(usageexport.KindBatch))
	mux.HandleFunc("GET /api/v1/sites", h.serveSites)
	mux.HandleFunc("GET /api/v1/sites/{site}/usage", h.serveUsage)
	mux.HandleFunc("GET /{$}", h.servePage)
	return mux
}

func (h *Hub) receive(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			writeError(w, http.StatusUnauthorized, "missing bearer token: register the site with `outpost hub site add` and send its token")
			return
		}
		site, ok, err := h.siteByToken(r.Context(), token)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if !ok {
			writeError(w, http.StatusUnauthorized, "unknown token")
			return
		}
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
			return
		}
		rc, err := h.Ingest(r.Context(), site, data, kind)
		var bad *BadFileError
		switch {
		case errors.As(err, &bad):
			h.log().Warn("usage refused", "site", site.Name, "reason", bad.Error())
			writeError(w, http.StatusBadRequest, bad.Error())
			return
		case err != nil:
			h.log().Error("usage not stored", "site", site.Name, "err", err)
			writeError(w, http.StatusInternalServerError, err.Error())
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
		writeError(w, http.StatusInternalServerError, err.Error())
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
		writeError(w, http.StatusBadRequest, "month: "+err.Error())
		return
	}
	u, err := h.Usage(r.Context(), r.PathValue("site"), month)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if r.URL.Query().Get("format") != "csv" {
		writeJSON(w, http.StatusOK, u)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+u.Site+"-"+u.Month+`.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"site", "month", "uid", "kind", "namespace", "name", "deleted_at", "records", "milli_vcore_seconds", "vcore_hours"})
	for _, row := range u.Instances {
		deleted := ""
		if row.DeletedAt != nil {
			deleted = row.DeletedAt.UTC().Format(time.RFC3339)
		}
		cw.Write([]string{u.Site, u.Month, row.UID, row.Kind, row.Namespace, row.Name, deleted,
			strconv.FormatInt(row.Records, 10), strconv.FormatInt(row.MilliVCoreSeconds, 10), row.VCoreHours})
	}
	cw.Flush()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
