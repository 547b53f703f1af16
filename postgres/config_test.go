package postgres_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/postgres"
)

func TestCheckParametersAcceptsOrdinarySettings(t *testing.T) {
	err := postgres.CheckParameters(map[string]string{
		"work_mem":                   "64MB",
		"shared_buffers":             "1GB",
		"pg_stat_statements.max":     "10000",
		"log_line_prefix":            `it's a \ %m `,
		"max_parallel_workers":       "4",
		"default_text_search_config": "pg_catalog.english",
	})
	if err != nil {
		t.Fatalf("ordinary settings refused: %v", err)
	}
	if err := postgres.CheckParameters(nil); err != nil {
		t.Fatalf("no settings refused: %v", err)
	}
}

func TestCheckParametersRefusesEveryManagedParameterByName(t *testing.T) {
	for _, name := range postgres.ManagedParameters {
		err := postgres.CheckParameters(map[string]string{"work_mem": "8MB", name: "x"})
		want := `parameter "` + name + `" is managed by Outpost and cannot be set`
		if err == nil || err.Error() != want {
			t.Errorf("CheckParameters with %s = %v, want %q", name, err, want)
		}
	}
}

func TestCheckParametersRefusesManagedParametersInAnyCase(t *testing.T) {
	// PostgreSQL reads "PORT" in postgresql.conf as port.
	err := postgres.CheckParameters(map[string]string{"PORT": "5433"})
	if err == nil || !strings.Contains(err.Error(), `parameter "PORT" is managed by Outpost`) {
		t.Fatalf("CheckParameters(PORT) = %v, want it refused as managed", err)
	}
}

func TestCheckParametersNamesTheFirstOffenderInSortedOrder(t *testing.T) {
	params := map[string]string{"wal_level": "minimal", "port": "1", "archive_command": "true", "work_mem": "1MB"}
	for range 20 { // map order varies between runs; the answer must not
		err := postgres.CheckParameters(params)
		if err == nil || !strings.Contains(err.Error(), `"archive_command"`) {
			t.Fatalf("CheckParameters = %v, want archive_command named (first in sorted order)", err)
		}
	}
}

func TestCheckParametersRefusesWhatWouldEscapeTheConfigFile(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"include_dir": "/etc"}, `parameter "include_dir" is a configuration file directive`},
		{map[string]string{"include": "/tmp/evil.conf"}, `parameter "include" is a configuration file directive`},
		{map[string]string{"recovery_end_command": "rm -rf /"}, `parameter "recovery_end_command" runs a shell command`},
		{map[string]string{"ssl_passphrase_command": "sh"}, `parameter "ssl_passphrase_command" runs a shell command`},
		{map[string]string{"work_mem = 1\nport": "5433"}, `is not a valid PostgreSQL setting name`},
		{map[string]string{"a.b.c": "1"}, `parameter "a.b.c" is not a valid PostgreSQL setting name`},
		{map[string]string{"work_mem": "1MB'\nport = '5433"}, `parameter "work_mem" has a value with a line break`},
		{map[string]string{"work_mem": "1MB", "Work_Mem": "2MB"}, `is given twice`},
	} {
		err := postgres.CheckParameters(tc.params)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckParameters(%q) = %v, want an error containing %q", tc.params, err, tc.want)
		}
	}
}

func TestMemorySettingsSizeTheServerFromItsMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		memory int64
		want   map[string]string
	}{
		{1 << 30, map[string]string{
			"shared_buffers":       "256MB",
			"effective_cache_size": "768MB",
			"maintenance_work_mem": "128MB",
			"work_mem":             "2MB",
		}},
		{4 << 30, map[string]string{
			"shared_buffers":       "1024MB",
			"effective_cache_size": "3072MB",
			"maintenance_work_mem": "512MB",
			"work_mem":             "10MB",
		}},
		// Large hosts: maintenance_work_mem stops at 2GB.
		{64 << 30, map[string]string{
			"shared_buffers":       "16384MB",
			"effective_cache_size": "49152MB",
			"maintenance_work_mem": "2048MB",
			"work_mem":             "163MB",
		}},
		// Tiny containers still get values PostgreSQL accepts.
		{64 << 20, map[string]string{
			"shared_buffers":       "16MB",
			"effective_cache_size": "48MB",
			"maintenance_work_mem": "8MB",
			"work_mem":             "163kB",
		}},
	} {
		got := postgres.MemorySettings(tc.memory)
		if len(got) != len(tc.want) {
			t.Errorf("MemorySettings(%d) = %v, want %v", tc.memory, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("MemorySettings(%d)[%s] = %q, want %q", tc.memory, k, got[k], v)
			}
		}
	}
}

func TestMemorySettingsWithoutALimitLeavePostgresDefaults(t *testing.T) {
	if got := postgres.MemorySettings(0); len(got) != 0 {
		t.Errorf("MemorySettings(0) = %v, want none", got)
	}
}

func TestMemorySettingsAreAcceptedAsParameters(t *testing.T) {
	if err := postgres.CheckParameters(postgres.MemorySettings(8 << 30)); err != nil {
		t.Fatal(err)
	}
}

func TestCPUSettingsGiveIndexBuildsTheInstancesCores(t *testing.T) {
	for milli, want := range map[int64]string{1000: "1", 2000: "2", 2500: "2", 16000: "8"} {
		if got := postgres.CPUSettings(milli)["max_parallel_maintenance_workers"]; got != want {
			t.Errorf("CPUSettings(%dm) workers = %q, want %q", milli, got, want)
		}
	}
	if got := postgres.CPUSettings(500); len(got) != 0 {
		t.Errorf("CPUSettings(500m) = %v, want none (PostgreSQL's default)", got)
	}
	if err := postgres.CheckParameters(postgres.CPUSettings(4000)); err != nil {
		t.Fatal(err)
	}
}

// The API types reject at admission what this package rejects at reconcile;
// the lists must not drift apart. Each group is one CEL rule.
func TestRefusedParametersMatchTheCRDRules(t *testing.T) {
	src := readTypes(t)
	rules := regexp.MustCompile(`XValidation:rule="self\.all\(k, !\(k\.lowerAscii\(\) in \[([^\]]*)\]\)\)"`).FindAllStringSubmatch(src, -1)
	if len(rules) != len(postgres.RefusedParameterGroups()) {
		t.Fatalf("%d `self.all(k, !(k.lowerAscii() in [...]))` rules on PostgresInstanceSpec.Parameters, want one per group of RefusedParameterGroups (%d)", len(rules), len(postgres.RefusedParameterGroups()))
	}
	var inCRD []string
	for _, m := range rules {
		for _, q := range strings.Split(m[1], ",") {
			inCRD = append(inCRD, strings.Trim(strings.TrimSpace(q), "'"))
		}
	}
	if !slices.Equal(sortedCopy(inCRD), sortedCopy(postgres.RefusedParameters())) {
		t.Errorf("CRD rules refuse %v, RefusedParameters is %v", sortedCopy(inCRD), sortedCopy(postgres.RefusedParameters()))
	}
}

func TestCheckParametersRefusesEveryParameterThatLoadsCodeOrTouchesFiles(t *testing.T) {
	for _, tc := range []struct{ name, reason string }{
		{"shared_preload_libraries", "loads code"},
		{"Local_Preload_Libraries", "loads code"},
		{"session_preload_libraries", "loads code"},
		{"dynamic_library_path", "loads code"},
		{"jit_provider", "loads code"},
		{"logging_collector", "outside its data directory"},
		{"log_directory", "outside its data directory"},
		{"log_filename", "outside its data directory"},
		{"external_pid_file", "outside its data directory"},
		{"unix_socket_group", "outside its data directory"},
		{"unix_socket_permissions", "outside its data directory"},
		{"ssl_ca_file", "outside its data directory"},
		{"ssl_dh_params_file", "outside its data directory"},
		{"data_directory", "managed by Outpost"},
		{"hba_file", "managed by Outpost"},
		{"archive_library", "managed by Outpost"},
	} {
		err := postgres.CheckParameters(map[string]string{"work_mem": "8MB", tc.name: "/tmp/x"})
		var pe *postgres.ParameterError
		if !errors.As(err, &pe) || pe.Name != tc.name || !strings.Contains(pe.Reason, tc.reason) {
			t.Errorf("CheckParameters with %s = %v, want a ParameterError naming it with %q", tc.name, err, tc.reason)
		}
	}
}

func TestAllowedExtensionsMatchTheCRDEnum(t *testing.T) {
	src := readTypes(t)
	m := regexp.MustCompile(`(?m)^// \+kubebuilder:validation:Enum=(.*)\ntype Extension string`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("no Enum marker on the Extension type in postgresinstance_types.go")
	}
	inCRD := strings.Split(strings.TrimSpace(m[1]), ";")
	if !slices.Equal(sortedCopy(inCRD), sortedCopy(postgres.AllowedExtensions)) {
		t.Errorf("CRD enum allows %v, AllowedExtensions is %v", inCRD, postgres.AllowedExtensions)
	}
}

func readTypes(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "controller", "api", "v1alpha1", "postgresinstance_types.go"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
