"""What people read: plans, previews, reports and events turned into text and HTML; no logic."""
