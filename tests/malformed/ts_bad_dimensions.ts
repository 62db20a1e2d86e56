@problemName Tiny
@dimensions two
@classLabel true a b
@data
1,2,3:a
