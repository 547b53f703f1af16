package harness

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// DockerfileStage is one FROM ... section of a Dockerfile, with each
// instruction's keyword upper-cased and its continuation lines joined.
type DockerfileStage struct {
	From         string
	Instructions []DockerInstruction
}

// DockerInstruction is one instruction, e.g. {"RUN", "apt-get update"}.
type DockerInstruction struct {
	Keyword, Args string
}

// Values returns the arguments of every instruction with this keyword.
func (s DockerfileStage) Values(keyword string) []string {
	var out []string
	for _, in := range s.Instructions {
		if in.Keyword == keyword {
			out = append(out, in.Args)
		}
	}
	return out
}

// Last returns the arguments of the stage's last instruction with this
// keyword, which is the one that takes effect for USER, ENTRYPOINT and CMD.
func (s DockerfileStage) Last(keyword string) string {
	v := s.Values(keyword)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// ReadDockerfile splits a Dockerfile into stages. We cannot run docker
// build here, so tests check the images on paper with this.
func ReadDockerfile(path string) ([]DockerfileStage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		stages  []DockerfileStage
		pending strings.Builder
	)
	flush := func(line int) error {
		text := strings.TrimSpace(pending.String())
		pending.Reset()
		if text == "" {
			return nil
		}
		keyword, args, _ := strings.Cut(text, " ")
		keyword = strings.ToUpper(keyword)
		args = strings.TrimSpace(args)
		if keyword == "FROM" {
			stages = append(stages, DockerfileStage{From: args})
			return nil
		}
		if len(stages) == 0 {
			return fmt.Errorf("%s:%d: %s before the first FROM", path, line, keyword)
		}
		s := &stages[len(stages)-1]
		s.Instructions = append(s.Instructions, DockerInstruction{Keyword: keyword, Args: args})
		return nil
	}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			// Comments may sit between continuation lines.
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		if err := flush(n); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(n); err != nil {
		return nil, err
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", path)
	}
	return stages, nil
}
