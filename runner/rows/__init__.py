"""Source rows as plain data: record shapes, file streams, the id rules; reads files only."""
