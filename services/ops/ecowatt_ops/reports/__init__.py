"""Abnormal-event reports (系统运行异常信息事件报送): monthly and on demand, Excel and PDF."""
