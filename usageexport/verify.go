package usageexport

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// PublicKey, when set, is the key the file must be signed with. Without
	// it the file's own key is used, which proves integrity but not origin.
	PublicKey ed25519.PublicKey
}

// Verified is a file that passed every check.
type Verified struct {
	*Opened
	Payload *Payload
}

// Verify checks a signed file completely: the signature over the exact
// payload bytes, the key, the period, every record's id and quantity, the
// totals, duplicates, and that every instance has a record for every hour it
// was running inside the period.
func Verify(data []byte, opts VerifyOptions) (*Verified, error) {
	o, err := OpenSigned(data)
	if err != nil {
		return nil, err
	}
	if opts.PublicKey != nil && !bytes.Equal(opts.PublicKey, o.PublicKey) {
		return nil, fmt.Errorf("signed by %s, not by the expected key %s", Fingerprint(o.PublicKey), Fingerprint(opts.PublicKey))
	}
	p, err := decodePayload(o.Payload)
	if err != nil {
		return nil, err
	}
	if err := CheckPayload(p, o.PublicKey); err != nil {
		return nil, err
	}
	return &Verified{Opened: o, Payload: p}, nil
}

// CheckPayload checks everything inside a payload whose signature is
// already known to be good.
func CheckPayload(p *Payload, pub ed25519.PublicKey) error {
	if p.FormatVersion != FormatVersion {
		return fmt.Errorf("formatVersion: %d is not supported, want %d", p.FormatVersion, FormatVersion)
	}
	if p.Site.ID != SiteID(pub) {
		return fmt.Errorf("site.id: %q is not the id of the signing key (%s)", p.Site.ID, SiteID(pub))
	}
	switch p.Kind {
	case KindMonthlyExport:
		if p.Period == nil {
			return errors.New("period: missing in a monthly export")
		}
		if err := checkPeriod(p.Period); err != nil {
			return err
		}
	case KindBatch:
		if p.Period != nil {
			return errors.New("period: a batch has no period")
		}
	default:
		return fmt.Errorf("kind: %q is not %q or %q", p.Kind, KindMonthlyExport, KindBatch)
	}

	instances := make(map[string]Instance, len(p.Instances))
	for i, inst := range p.Instances {
		if inst.UID == "" {
			return fmt.Errorf("instances[%d].uid: empty", i)
		}
		if _, dup := instances[inst.UID]; dup {
			return fmt.Errorf("instances[%d].uid: %s is listed twice", i, inst.UID)
		}
		if inst.DeletedAt != nil && inst.DeletedAt.Before(inst.CreatedAt) {
			return fmt.Errorf("instances[%d].deletedAt: before createdAt", i)
		}
		instances[inst.UID] = inst
	}

	// Records per instance, to find duplicates and gaps. Ids are hashes of
	// content (checked below), so a duplicate id is a duplicate record: the
	// same instance and start. Records of an instance sorted by start put
	// any duplicates side by side, which no map of 720,000 ids is needed
	// to find.
	sums := map[string]*instanceRecords{}
	var total Total
	for i := range p.Records {
		r := &p.Records[i]
		inst, ok := instances[r.UID]
		if !ok {
			return fmt.Errorf("records[%d].uid: instance %s is not in instances", i, r.UID)
		}
		if err := checkRecord(p, inst, r); err != nil {
			return fmt.Errorf("records[%d] (%s): %w", i, r.ID, err)
		}
		t := sums[r.UID]
		if t == nil {
			t = &instanceRecords{InstanceTotal: InstanceTotal{UID: r.UID}}
			sums[r.UID] = t
		}
		t.records = append(t.records, i)
		t.Records++
		t.MilliVCoreSeconds += r.MilliVCoreSeconds
		total.Records++
		total.MilliVCoreSeconds += r.MilliVCoreSeconds
	}
	for _, t := range sums {
		if err := t.sortAndFindDuplicate(p.Records); err != nil {
			return err
		}
	}
	if len(p.Totals) != len(sums) {
		return fmt.Errorf("totals: %d entries, but records cover %d instances", len(p.Totals), len(sums))
	}
	for i, t := range p.Totals {
		s := sums[t.UID]
		if s == nil {
			return fmt.Errorf("totals[%d]: instance %s has no records", i, t.UID)
		}
		if t.Records != s.Records || t.MilliVCoreSeconds != s.MilliVCoreSeconds || t.VCoreHours != VCoreHours(s.MilliVCoreSeconds) {
			return fmt.Errorf("totals[%d] (%s): says %d records, %d milli-vCore-seconds (%s vCore-hours); the records sum to %d, %d (%s)",
				i, t.UID, t.Records, t.MilliVCoreSeconds, t.VCoreHours, s.Records, s.MilliVCoreSeconds, VCoreHours(s.MilliVCoreSeconds))
		}
	}
	if p.Total.Records != total.Records || p.Total.MilliVCoreSeconds != total.MilliVCoreSeconds || p.Total.VCoreHours != VCoreHours(total.MilliVCoreSeconds) {
		return fmt.Errorf("total: says %d records, %d milli-vCore-seconds; the records sum to %d, %d",
			p.Total.Records, p.Total.MilliVCoreSeconds, total.Records, total.MilliVCoreSeconds)
	}
	if p.Kind == KindMonthlyExport {
		return checkGaps(p, sums)
	}
	return nil
}

// instanceRecords sums one instance's records and lists them (indexes into
// the payload's records).
type instanceRecords struct {
	InstanceTotal
	records []int
}

// sortAndFindDuplicate orders the instance's records by start (an export
// lists them so already) and refuses a record that appears twice.
func (t *instanceRecords) sortAndFindDuplicate(recs []Record) error {
	byStart := func(a, b int) int {
		if c := recs[a].Start.Compare(recs[b].Start); c != 0 {
			return c
		}
		return a - b
	}
	if !slices.IsSortedFunc(t.records, byStart) {
		slices.SortFunc(t.records, byStart)
	}
	for i := 0; i < len(t.records); {
		j := i + 1
		for j < len(t.records) && recs[t.records[j]].Start.Equal(recs[t.records[i]].Start) {
			j++
		}
		// Records starting together: almost never more than one.
		for a := i; a < j; a++ {
			for b := a + 1; b < j; b++ {
				if ra, rb := t.records[a], t.records[b]; recs[ra].ID == recs[rb].ID {
					return fmt.Errorf("records[%d].id: %s appears twice", max(ra, rb), recs[rb].ID)
				}
			}
		}
		i = j
	}
	return nil
}

func checkPeriod(pe *Period) error {
	start, end, err := ParseMonth(pe.Month)
	if err != nil {
		return fmt.Errorf("period.month: %w", err)
	}
	if !pe.Start.Equal(start) || !pe.End.Equal(end) {
		return fmt.Errorf("period: start %s and end %s are not the bounds of %s", pe.Start, pe.End, pe.Month)
	}
	if pe.CoveredUntil.Before(start) || pe.CoveredUntil.After(end) || !pe.CoveredUntil.Truncate(time.Hour).Equal(pe.CoveredUntil) {
		return fmt.Errorf("period.coveredUntil: %s is not a whole hour within %s", pe.CoveredUntil, pe.Month)
	}
	if pe.Partial != pe.CoveredUntil.Before(end) {
		return fmt.Errorf("period.partial: %v, but coveredUntil is %s and the month ends %s", pe.Partial, pe.CoveredUntil, end)
	}
	return nil
}

func checkRecord(p *Payload, inst Instance, r *Record) error {
	if !r.Start.Before(r.End) {
		return errors.New("start is not before end")
	}
	if !r.Start.Truncate(time.Second).Equal(r.Start) || !r.End.Truncate(time.Second).Equal(r.End) {
		return errors.New("start and end must be whole seconds")
	}
	if !r.Start.Truncate(time.Hour).Equal(r.End.Add(-time.Second).Truncate(time.Hour)) {
		return errors.New("start and end are not inside one clock hour")
	}
	if r.Start.Before(inst.CreatedAt) || (inst.DeletedAt != nil && r.End.After(*inst.DeletedAt)) {
		return errors.New("outside the instance's life")
	}
	if pe := p.Period; pe != nil && (r.Start.Before(pe.Start) || r.End.After(pe.CoveredUntil)) {
		return fmt.Errorf("outside the period %s up to %s", pe.Month, pe.CoveredUntil.Format(time.RFC3339))
	}
	if r.MilliVCores <= 0 {
		return errors.New("milliVCores must be positive")
	}
	want := r.MilliVCores * int64(r.End.Sub(r.Start)/time.Second)
	if r.MilliVCoreSeconds != want || !vCoreHoursIs(r.VCoreHours, want) {
		return fmt.Errorf("quantity is %d milli-vCore-seconds (%s vCore-hours), but %d milli-vCores for %s is %d (%s)",
			r.MilliVCoreSeconds, r.VCoreHours, r.MilliVCores, r.End.Sub(r.Start), want, VCoreHours(want))
	}
	if !recordIDIs(r.ID, p.Site.ID, inst, r) {
		return errors.New("id is not the hash of what the record describes")
	}
	return nil
}

// checkGaps requires every instance's records to tile its life within the
// period exactly: no hour missing, nothing overlapping. sums lists each
// instance's records in order of start.
func checkGaps(p *Payload, sums map[string]*instanceRecords) error {
	pe := p.Period
	for _, inst := range p.Instances {
		from, to := inst.CreatedAt, pe.CoveredUntil
		if from.Before(pe.Start) {
			from = pe.Start
		}
		if inst.DeletedAt != nil && inst.DeletedAt.Before(to) {
			to = *inst.DeletedAt
		}
		var recs []int
		if t := sums[inst.UID]; t != nil {
			recs = t.records
		}
		at := from
		for _, i := range recs {
			r := &p.Records[i]
			if r.Start.After(at) {
				return fmt.Errorf("instance %s/%s (%s): no record from %s to %s although it was running",
					inst.Namespace, inst.Name, inst.UID, at.Format(time.RFC3339), r.Start.Format(time.RFC3339))
			}
			if r.Start.Before(at) {
				return fmt.Errorf("instance %s/%s (%s): records overlap at %s", inst.Namespace, inst.Name, inst.UID, r.Start.Format(time.RFC3339))
			}
			at = r.End
		}
		if at.Before(to) {
			return fmt.Errorf("instance %s/%s (%s): no record from %s to %s although it was running",
				inst.Namespace, inst.Name, inst.UID, at.Format(time.RFC3339), to.Format(time.RFC3339))
		}
	}
	return nil
}
