package usageexport

import "strconv"

// milliVCoreSecondsPerVCoreHour converts the ledger's integer unit into the
// billed unit. Quantities are stored and summed as integers so that totals
// are exact: a float would drift after hundreds of thousands of additions.
const milliVCoreSecondsPerVCoreHour = 3_600_000

// VCoreHours formats an integer quantity of milli-vCore-seconds as
// vCore-hours with six decimals, rounded half up. It is for people; the
// integer is the quantity of record.
func VCoreHours(milliVCoreSeconds int64) string {
	var buf [32]byte
	return string(appendVCoreHours(buf[:0], milliVCoreSeconds))
}

// vCoreHoursIs reports whether s == VCoreHours(milliVCoreSeconds), without
// allocating.
func vCoreHoursIs(s string, milliVCoreSeconds int64) bool {
	var buf [32]byte
	return string(appendVCoreHours(buf[:0], milliVCoreSeconds)) == s
}

func appendVCoreHours(b []byte, milliVCoreSeconds int64) []byte {
	neg := milliVCoreSeconds < 0
	if neg {
		milliVCoreSeconds = -milliVCoreSeconds
		b = append(b, '-')
	}
	// micro-vCore-hours = mvcs / 3.6, rounded half up.
	micro := (milliVCoreSeconds*10 + 18) / 36
	b = strconv.AppendInt(b, micro/1_000_000, 10)
	frac := micro % 1_000_000
	b = append(b, '.')
	for d := int64(100_000); d > 0; d /= 10 {
		b = append(b, byte('0'+frac/d%10))
	}
	return b
}
