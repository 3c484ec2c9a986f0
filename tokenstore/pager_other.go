//go:build !linux

package tokenstore

// otherPager is the pager's OS elsewhere: it cannot reclaim mapped pages,
// so the pager stops at its first step and the kernel alone decides.
type otherPager struct{}

func newPagerOS() pagerOS { return otherPager{} }

func (otherPager) tables(string) ([]mapping, error) { return nil, errPagerUnsupported }
func (otherPager) resident(mapping) (int64, error)  { return 0, errPagerUnsupported }
func (otherPager) random(mapping) error             { return errPagerUnsupported }
func (otherPager) sequential(mapping) error         { return errPagerUnsupported }
func (otherPager) fileRSS() (int64, error)          { return 0, errPagerUnsupported }
func (otherPager) release(mapping) error            { return errPagerUnsupported }
