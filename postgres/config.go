package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Parameter policy. A PostgresInstance's parameters are written by a
// manifest author, who is not trusted with the host: nothing they write may
// load code into the server, run a command, or make the server read or
// write files outside its data directory. Every PostgreSQL 15 setting was
// reviewed against that rule; the ones below are refused, in four groups.
// Everything else (memory, planner, WAL sizing, autovacuum, logging content,
// extension settings such as pg_stat_statements.max) is tuning inside the
// data directory and allowed. Extensions are not parameters: they come only
// through the allowlist (CheckExtensions and the CRD's Extension enum).
//
// RefusedParameters (all four groups) must stay identical to the CEL rules on
// PostgresInstanceSpec.Parameters in
// controller/api/v1alpha1/postgresinstance_types.go, so that reconcile
// refuses what admission refuses (a test compares the two).

// ManagedParameters lists the postgresql.conf settings Outpost sets itself
// and refuses from users: where the server listens, where its files are, and
// how WAL is archived and restored. A user setting any of them could move the
// server out of Outpost's reach or break backups silently.
var ManagedParameters = []string{
	"listen_addresses",
	"port",
	"unix_socket_directories",
	"data_directory",
	"config_file",
	"hba_file",
	"ident_file",
	"archive_mode",
	"archive_command",
	"archive_library",
	"restore_command",
	"recovery_target_time",
	"wal_level",
	"ssl",
	"ssl_cert_file",
	"ssl_key_file",
}

// codeLoadingParameters load shared libraries into the server: by name from
// any directory (absolute paths are accepted), or by widening the search
// path. jit_provider names a library under $libdir and accepts "../".
// Outpost adds pg_stat_statements to shared_preload_libraries itself when
// the extension is listed.
var codeLoadingParameters = []string{
	"shared_preload_libraries",
	"local_preload_libraries",
	"session_preload_libraries",
	"dynamic_library_path",
	"jit_provider",
}

// fileParameters make the server write, create or read files at paths they
// name, outside its data directory: the log collector (directory, file
// names, modes), the pid file, the socket's group and mode, key and
// certificate files (TLS, Kerberos), the promotion trigger file, and a
// standby's connection string (which names password and key files).
var fileParameters = []string{
	"logging_collector",
	"log_directory",
	"log_filename",
	"log_file_mode",
	"external_pid_file",
	"unix_socket_group",
	"unix_socket_permissions",
	"ssl_ca_file",
	"ssl_crl_file",
	"ssl_crl_dir",
	"ssl_dh_params_file",
	"krb_server_keyfile",
	"promote_trigger_file",
	"primary_conninfo",
}

// configDirectives are postgresql.conf lines that look like settings but pull
// in other files: through them a user could load settings that never passed
// CheckParameters.
var configDirectives = []string{"include", "include_dir", "include_if_exists"}

// shellCommandParameters run a shell command as the server's operating-system
// user. They only run during recovery or with SSL on, both of which Outpost
// controls, but nothing a user writes in a spec may ever execute on the host.
var shellCommandParameters = []string{"archive_cleanup_command", "recovery_end_command", "ssl_passphrase_command"}

// RefusedParameterGroups are the names CheckParameters refuses outright,
// lower case, by the reason it gives for each group.
func RefusedParameterGroups() map[string][]string {
	return map[string][]string{
		reasonManaged:   ManagedParameters,
		reasonCode:      codeLoadingParameters,
		reasonFiles:     fileParameters,
		reasonDirective: configDirectives,
		reasonShell:     shellCommandParameters,
	}
}

// RefusedParameters are the names CheckParameters refuses outright, lower
// case: every group of RefusedParameterGroups.
func RefusedParameters() []string {
	return slices.Concat(ManagedParameters, codeLoadingParameters, fileParameters, configDirectives, shellCommandParameters)
}

// Reasons CheckParameters gives, one per group of refused parameters.
const (
	reasonManaged   = "is managed by Outpost and cannot be set"
	reasonCode      = "loads code into the server and cannot be set; extensions come only through spec.extensions"
	reasonFiles     = "makes the server read or write files outside its data directory and cannot be set"
	reasonDirective = "is a configuration file directive, not a setting, and cannot be set"
	reasonShell     = "runs a shell command on the host and cannot be set"
)

// ParameterError is why CheckParameters refuses one parameter, so callers
// can name the field (spec.parameters.NAME).
type ParameterError struct {
	// Name is the parameter as the user wrote it.
	Name string
	// Reason completes "parameter NAME ...".
	Reason string
}

func (e *ParameterError) Error() string { return fmt.Sprintf("parameter %q %s", e.Name, e.Reason) }

// parameterName is what postgresql.conf accepts as a setting name: an
// identifier, or two joined by a dot for an extension's settings
// (pg_stat_statements.max).
var parameterName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// CheckParameters returns an error naming the first parameter, in sorted
// order, that a user may not set: one Outpost manages, a configuration file
// directive, a shell command, a name postgresql.conf cannot hold, a value with
// a line break, or a name given twice. Names are compared without regard to
// case, as PostgreSQL compares them, so "PORT" is refused like "port".
func CheckParameters(params map[string]string) error {
	keys := sortedKeys(params)
	seen := make(map[string]string, len(keys))
	for _, k := range keys {
		if err := checkSetting(k, params[k]); err != nil {
			return err
		}
		lower := strings.ToLower(k)
		if first, ok := seen[lower]; ok {
			return &ParameterError{k, fmt.Sprintf("is given twice (also as %q): PostgreSQL names are case-insensitive, keep one", first)}
		}
		seen[lower] = k
		for reason, names := range RefusedParameterGroups() {
			if slices.Contains(names, lower) {
				return &ParameterError{k, reason}
			}
		}
	}
	return nil
}

// outpostPreloads are the libraries Outpost itself may put in
// shared_preload_libraries, because an allowlisted extension needs them
// loaded at start (pg_stat_statements' views fail otherwise).
var outpostPreloads = []string{"pg_stat_statements"}

// CheckMergedParameters is CheckParameters for a user's parameters merged
// with the settings Outpost derives from the spec, as the runtimes pass them
// to ApplyParameters: shared_preload_libraries is accepted there only when
// it names nothing but libraries of allowlisted extensions.
func CheckMergedParameters(params map[string]string) error {
	rest := make(map[string]string, len(params))
	for k, v := range params {
		if strings.ToLower(k) != "shared_preload_libraries" {
			rest[k] = v
			continue
		}
		for _, lib := range strings.Split(v, ",") {
			if lib = strings.TrimSpace(lib); lib != "" && !slices.Contains(outpostPreloads, lib) {
				return &ParameterError{k, fmt.Sprintf("names %q; only the libraries of allowlisted extensions (%s) are preloaded", lib, strings.Join(outpostPreloads, ", "))}
			}
		}
	}
	return CheckParameters(rest)
}

// checkSetting refuses what cannot be written to postgresql.conf as one
// line: names that are not identifiers (a newline in a name would start a
// line of the user's choosing) and values with line breaks or NUL bytes.
func checkSetting(name, value string) error {
	if !parameterName.MatchString(name) {
		return &ParameterError{name, "is not a valid PostgreSQL setting name (letters, digits and underscores, optionally one dot)"}
	}
	if strings.ContainsAny(value, "\n\r\x00") {
		return &ParameterError{name, "has a value with a line break or NUL byte, which postgresql.conf cannot hold"}
	}
	return nil
}

// MemorySettings derives memory settings from the server's memory limit in
// bytes, so that an instance sized for 4 GiB uses them instead of
// PostgreSQL's defaults sized for a 2005 laptop:
//
//   - shared_buffers: 25% (PostgreSQL's own advice for a dedicated server);
//   - effective_cache_size: 75%, what the planner may assume the OS caches;
//   - maintenance_work_mem: 1/8, capped at 2GB, because index builds
//     (pgvector HNSW above all) are much faster when the graph fits in it;
//   - work_mem: what is left after shared_buffers spread over 100 connections
//     running about three sorts or hashes each, so a busy server does not run
//     out of memory.
//
// Values are whole megabytes ("256MB"), or kilobytes below one megabyte. A
// limit of zero or less means "unknown" and yields no settings: PostgreSQL's
// defaults are then safer than a guess. Callers let users' parameters
// override these.
func MemorySettings(memoryBytes int64) map[string]string {
	if memoryBytes <= 0 {
		return map[string]string{}
	}
	const (
		kB = 1 << 10
		mB = 1 << 20
		gB = 1 << 30
	)
	sharedBuffers := max(memoryBytes/4, 128*kB)
	maintenance := min(max(memoryBytes/8, 1*mB), 2*gB)
	work := max((memoryBytes-sharedBuffers)/(100*3), 64*kB)
	return map[string]string{
		"shared_buffers":       formatMemory(sharedBuffers),
		"effective_cache_size": formatMemory(memoryBytes * 3 / 4),
		"maintenance_work_mem": formatMemory(maintenance),
		"work_mem":             formatMemory(work),
	}
}

// CPUSettings derives settings from the server's CPU limit in millicores:
// max_parallel_maintenance_workers is the whole cores, so an index build
// (pgvector's HNSW and IVFFlat on 0.8.2 and later, B-trees) uses the cores
// the instance was given rather than PostgreSQL's fixed 2. It stays within
// the default max_worker_processes (8), which only a restart could raise.
// A limit below one core, or unknown, yields no settings. The serial build
// guard (pgvector.go) overrides it on a pgvector older than 0.8.2.
func CPUSettings(milliCPU int64) map[string]string {
	if milliCPU < 1000 {
		return map[string]string{}
	}
	return map[string]string{"max_parallel_maintenance_workers": strconv.FormatInt(min(milliCPU/1000, 8), 10)}
}

// ResourceSettings are the settings an instance's resources imply: its
// memory (MemorySettings) and its CPU (CPUSettings). Both runtimes start
// from them, with the user's parameters on top.
func ResourceSettings(memoryBytes, milliCPU int64) map[string]string {
	params := MemorySettings(memoryBytes)
	maps.Copy(params, CPUSettings(milliCPU))
	return params
}

// formatMemory writes bytes in PostgreSQL's memory units, rounded down.
func formatMemory(bytes int64) string {
	if bytes >= 1<<20 {
		return strconv.FormatInt(bytes>>20, 10) + "MB"
	}
	return strconv.FormatInt(bytes>>10, 10) + "kB"
}

// WriteConfig writes the managed settings file: the caller's parameters,
// then the serial index build guard while the installed pgvector is older
// than 0.8.2 (see pgvector.go), then ManagedSettings, then TLS, the listen
// address and port, so Outpost's own settings always win. There is no Unix
// socket unless SocketDir (or ManagedSettings) asks for one. It replaces
// whatever the previous call wrote, atomically, so a crash never leaves half
// a file for the next start to trip over.
//
// WriteConfig does not refuse managed parameters (Outpost's own callers set
// some); ApplyParameters, the path for users' settings, does. It does refuse
// names and values that cannot be written as one line.
func (s *Server) WriteConfig(parameters map[string]string) error {
	_, err := s.writeConfig(parameters)
	return err
}

// writeConfig is WriteConfig that also reports whether the settings file or
// pg_hba.conf changed.
func (s *Server) writeConfig(parameters map[string]string) (changed bool, err error) {
	content, err := s.renderConfig(parameters)
	if err != nil {
		return false, err
	}
	confChanged, err := s.writeIfChanged(s.managedConfPath(), content)
	if err != nil {
		return false, err
	}
	hbaChanged, err := s.writeIfChanged(s.hbaPath(), s.renderHBA())
	return confChanged || hbaChanged, err
}

// writeIfChanged replaces a file unless it already holds content.
func (s *Server) writeIfChanged(path string, content []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, content) {
		return false, nil
	}
	return true, s.replaceFile(path, content)
}

// renderConfig returns the managed settings file for parameters.
func (s *Server) renderConfig(parameters map[string]string) ([]byte, error) {
	settings := map[string]string{"unix_socket_directories": ""}
	if s.SocketDir != "" {
		settings["unix_socket_directories"] = s.SocketDir
		settings["unix_socket_permissions"] = "0700"
	}
	if s.TLS != nil && s.SocketDir == "" {
		return nil, fmt.Errorf("write %s: a server with TLS needs a socket directory for the superuser", s.managedConfPath())
	}
	guard, err := s.pgvectorGuard()
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", s.managedConfPath(), err)
	}
	for _, layer := range []map[string]string{parameters, guard, s.ManagedSettings} {
		for _, k := range sortedKeys(layer) {
			if err := checkSetting(k, layer[k]); err != nil {
				return nil, fmt.Errorf("write %s: %w", s.managedConfPath(), err)
			}
			settings[strings.ToLower(k)] = layer[k]
		}
	}
	if s.TLS != nil {
		maps.Copy(settings, s.TLS.settings())
	}
	settings["listen_addresses"] = s.listenAddress()
	settings["port"] = strconv.Itoa(s.Port)

	var b bytes.Buffer
	b.WriteString("# Written by Outpost; edits are overwritten.\n")
	for _, k := range sortedKeys(settings) {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteConfigValue(settings[k]))
	}
	return b.Bytes(), nil
}

// replaceFile writes content to a file of the data directory through a
// temporary file and a rename, owned by the server's account.
func (s *Server) replaceFile(path string, content []byte) error {
	acct, err := serverAccount()
	if err != nil {
		return err
	}
	return writeOwned(acct, path, content)
}

// writeOwned writes a 0600 file owned by acct through a temporary file and
// a rename, so a crash never leaves half a file.
func writeOwned(acct *account, path string, content []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(content)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = acct.own(tmp.Name())
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readConfig returns the managed settings file, or nil when there is none.
func (s *Server) readConfig() ([]byte, error) {
	b, err := os.ReadFile(s.managedConfPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// restoreConfig puts back what readConfig returned.
func (s *Server) restoreConfig(content []byte) error {
	if content == nil {
		if err := os.Remove(s.managedConfPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("restore %s: %w", s.managedConfPath(), err)
		}
		return nil
	}
	return s.replaceFile(s.managedConfPath(), content)
}

func (s *Server) managedConfPath() string { return filepath.Join(s.DataDir, managedConfFile) }

// quoteConfigValue quotes a value for postgresql.conf, whose quoted strings
// write a quote as two quotes and treat a backslash as an escape.
func quoteConfigValue(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `'`, `''`)
	return "'" + v + "'"
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
