module github.com/goodgo/goodgo/db

go 1.26.0
