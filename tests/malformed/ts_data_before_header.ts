@problemName Tiny
1,2,3:a
@data
