module github.com/goodgo/goodgo/tools/benchreport

go 1.26.0
