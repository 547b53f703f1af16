package usageexport

import "fmt"

// milliVCoreSecondsPerVCoreHour converts the ledger's integer unit into the
// billed unit. Quantities are stored and summed as integers so that totals
// are exact: a float would drift after hundreds of thousands of additions.
const milliVCoreSecondsPerVCoreHour = 3_600_000

// VCoreHours formats an integer quantity of milli-vCore-seconds as
// vCore-hours with six decimals, rounded half up. It is for people; the
// integer is the quantity of record.
func VCoreHours(milliVCoreSeconds int64) string {
	neg := milliVCoreSeconds < 0
	if neg {
		milliVCoreSeconds = -milliVCoreSeconds
	}
	// micro-vCore-hours = mvcs / 3.6, rounded half up.
	micro := (milliVCoreSeconds*10 + 18) / 36
	s := fmt.Sprintf("%d.%06d", micro/1_000_000, micro%1_000_000)
	if neg {
		s = "-" + s
	}
	return s
}
