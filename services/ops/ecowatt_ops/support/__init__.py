"""Support requests (服务请求) from bureau and enterprise users, routed to O&M staff, with
clocks counted in working time on China's official calendar."""
