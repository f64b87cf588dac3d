package grpcserver

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// PageSize is a List call's page size from its request's page_size: 0
// means def, more than maxSize is cut to maxSize, and a negative size is
// InvalidArgument.
func PageSize(requested int32, def, maxSize int) (int, error) {
	size := int(requested)
	switch {
	case size < 0:
		return 0, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		return def, nil
	case size > maxSize:
		return maxSize, nil
	}
	return size, nil
}
